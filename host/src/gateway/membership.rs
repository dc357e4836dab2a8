//! Where a node may be. A node's URL is only ever a base: the gateway adds
//! its own fixed paths (`/health`, `/v1/call/{method}`), so a URL with a
//! path, query, fragment or credentials is refused rather than trimmed, and
//! an optional allow-list of networks keeps the gateway from being aimed at
//! anything else.

use ipnet::IpNet;
use std::net::IpAddr;

/// Which node URLs the gateway accepts.
#[derive(Debug, Clone, Default)]
pub struct NodePolicy {
    /// When not empty, a node's host must be an IP address in one of these.
    pub networks: Vec<IpNet>,
}

/// Why a node URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeUrlError {
    /// Not a URL at all.
    #[error("'{url}' is not a URL ({detail}); give a node as http://HOST:PORT")]
    Unparsable {
        /// What was given.
        url: String,
        /// The parser's reason.
        detail: String,
    },
    /// A URL that is more, or other, than `http(s)://host:port`.
    #[error(
        "'{url}' is not a node address: {problem}; give a node as http://HOST:PORT or https://HOST:PORT, nothing more"
    )]
    NotABase {
        /// What was given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Outside every `--node-network`.
    #[error(
        "'{url}' is outside the networks this gateway takes nodes from ({networks}); start the gateway with --node-network covering it"
    )]
    OutsideNetworks {
        /// What was given.
        url: String,
        /// The allowed networks.
        networks: String,
    },
    /// A host name where `--node-network` needs an address.
    #[error(
        "'{url}' names its host; with --node-network set, give the node's IP address (a name could resolve anywhere later)"
    )]
    NotAnAddress {
        /// What was given.
        url: String,
    },
}

impl NodePolicy {
    /// The canonical form of `url` (`scheme://host:port`), or why it is not
    /// acceptable as a node.
    pub fn check(&self, url: &str) -> Result<String, NodeUrlError> {
        let parsed = url::Url::parse(url).map_err(|e| NodeUrlError::Unparsable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
        let refuse = |problem| {
            Err(NodeUrlError::NotABase {
                url: url.to_owned(),
                problem,
            })
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return refuse("the scheme must be http or https");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return refuse("it carries a user name or password");
        }
        if !matches!(parsed.path(), "" | "/") {
            return refuse("it has a path");
        }
        if parsed.query().is_some() {
            return refuse("it has a query");
        }
        if parsed.fragment().is_some() {
            return refuse("it has a fragment");
        }
        let (Some(host), Some(port)) = (parsed.host(), parsed.port_or_known_default()) else {
            return refuse("it has no host");
        };
        if !writes_a_port(url) {
            return refuse("it has no port");
        }
        if !self.networks.is_empty() {
            let ip: IpAddr = match host {
                url::Host::Ipv4(ip) => ip.into(),
                url::Host::Ipv6(ip) => ip.into(),
                url::Host::Domain(_) => {
                    return Err(NodeUrlError::NotAnAddress {
                        url: url.to_owned(),
                    });
                }
            };
            if !self.networks.iter().any(|net| net.contains(&ip)) {
                return Err(NodeUrlError::OutsideNetworks {
                    url: url.to_owned(),
                    networks: self
                        .networks
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(format!("{}://{host}:{port}", parsed.scheme()))
    }
}

/// Whether `url` writes its port out after the host, as a node address
/// must: the parser drops a port that is the scheme's default, and takes
/// a missing one as that default, so only the text tells.
fn writes_a_port(url: &str) -> bool {
    let Some((_, rest)) = url.trim().split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port = match authority.rfind(']') {
        Some(end) => authority[end + 1..].strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, port)| port),
    };
    port.is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> NodePolicy {
        NodePolicy::default()
    }

    #[test]
    fn a_base_url_is_accepted_in_canonical_form() {
        let policy = open();
        assert_eq!(
            policy.check("http://127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            policy.check("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            policy.check("https://Node1.example:443").unwrap(),
            "https://node1.example:443"
        );
        assert_eq!(policy.check("http://[::1]:80").unwrap(), "http://[::1]:80");
        assert_eq!(
            policy.check("http://127.0.0.1:80").unwrap(),
            "http://127.0.0.1:80"
        );
    }

    #[test]
    fn anything_beyond_scheme_host_and_port_is_refused() {
        let policy = open();
        for url in [
            "http://127.0.0.1:9000/admin/delete?x=",
            "http://127.0.0.1:9000/admin",
            "http://127.0.0.1:9000?x=1",
            "http://127.0.0.1:9000/#top",
            "http://user:pw@127.0.0.1:9000",
            "http://user@127.0.0.1:9000",
            "ftp://127.0.0.1:9000",
            "file:///etc/passwd",
            "unix:/run/socket",
            "127.0.0.1:9000",
            "http://127.0.0.1",
            "https://node.example/",
            "http://[::1]",
            "http://127.0.0.1:",
            "",
        ] {
            assert!(policy.check(url).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn networks_limit_where_nodes_may_be() {
        let policy = NodePolicy {
            networks: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(policy.check("http://10.1.2.3:9000").is_ok());
        assert!(policy.check("http://[::1]:9000").is_ok());
        assert!(matches!(
            policy.check("http://127.0.0.1:9000"),
            Err(NodeUrlError::OutsideNetworks { .. })
        ));
        assert!(matches!(
            policy.check("http://localhost:9000"),
            Err(NodeUrlError::NotAnAddress { .. })
        ));
    }
}
