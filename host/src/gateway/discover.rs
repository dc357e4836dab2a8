//! DNS discovery (`--discover dns:NAME:PORT`): the gateway resolves NAME
//! through the system resolver every interval and keeps its discovered
//! nodes equal to the addresses it returns. A Kubernetes headless Service
//! lists its ready pods this way; so can `/etc/hosts` or any DNS server.

use super::membership::NodePolicy;
use super::registry::Registry;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// One `--discover` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    /// The name resolved.
    pub name: String,
    /// The port every address serves on.
    pub port: u16,
}

/// Why a `--discover` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{problem}; write it as dns:NAME:PORT, e.g. dns:madrpc-node.default.svc.cluster.local:9000"
)]
pub struct DnsTargetError {
    problem: &'static str,
}

impl FromStr for DnsTarget {
    type Err = DnsTargetError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let refuse = |problem| DnsTargetError { problem };
        let rest = given
            .strip_prefix("dns:")
            .ok_or_else(|| refuse("only dns: discovery exists"))?;
        let (name, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| refuse("the port is missing"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| refuse("the port is not a number from 1 to 65535"))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if name.is_empty() || !name.chars().all(valid) {
            return Err(refuse("the name is not a DNS name"));
        }
        Ok(Self {
            name: name.to_owned(),
            port,
        })
    }
}

impl DnsTarget {
    /// The node URLs the name resolves to now (plain HTTP: discovered nodes
    /// sit on the cluster's own network, and the join token authenticates
    /// the gateway to them).
    async fn resolve(&self) -> std::io::Result<BTreeSet<String>> {
        let addrs = tokio::net::lookup_host((self.name.as_str(), self.port)).await?;
        Ok(addrs.map(|addr| format!("http://{addr}")).collect())
    }
}

/// Resolves every target each `interval`, forever, and sets the registry's
/// discovered nodes to the union of the answers. A name that fails to
/// resolve keeps its last answer: a resolver hiccup must not drain the
/// grid; the failure is logged when it starts and when it ends, not at
/// every attempt. Addresses outside the gateway's node networks are left
/// out.
pub async fn run(
    registry: Arc<Registry>,
    targets: Vec<DnsTarget>,
    interval: Duration,
    policy: NodePolicy,
) {
    let mut known: Vec<BTreeSet<String>> = vec![BTreeSet::new(); targets.len()];
    let mut failing = vec![false; targets.len()];
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for ((target, last), failing) in targets.iter().zip(&mut known).zip(&mut failing) {
            match target.resolve().await {
                Ok(urls) => {
                    if std::mem::take(failing) {
                        tracing::info!(name = %target.name, addresses = urls.len(), "the --discover name resolves again");
                    }
                    *last = urls;
                }
                Err(error) if !*failing => {
                    *failing = true;
                    tracing::warn!(
                        name = %target.name,
                        %error,
                        "cannot resolve the --discover name; keeping its last {} addresses until it resolves",
                        last.len()
                    );
                }
                Err(error) => tracing::debug!(name = %target.name, %error, "still cannot resolve"),
            }
        }
        let mut wanted = BTreeSet::new();
        for url in known.iter().flatten() {
            match policy.check(url) {
                Ok(url) => {
                    wanted.insert(url);
                }
                Err(error) => tracing::warn!("{error}; not using this discovered address"),
            }
        }
        // Every round, not only on a change: an address that was also a
        // joined node comes back as discovered once the joined one leaves.
        registry.set_discovered(&wanted.into_iter().collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_how_to_write_them() {
        assert_eq!(
            "dns:madrpc-node.ns.svc:9000".parse::<DnsTarget>(),
            Ok(DnsTarget {
                name: "madrpc-node.ns.svc".into(),
                port: 9000
            })
        );
        for bad in [
            "srv:a:1",
            "dns:a",
            "dns:a:0",
            "dns::9000",
            "dns:a b:1",
            "dns:a:x",
        ] {
            let error = bad.parse::<DnsTarget>().unwrap_err().to_string();
            assert!(error.contains("dns:NAME:PORT"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn a_name_resolves_through_the_system_resolver() {
        let target: DnsTarget = "dns:localhost:9000".parse().unwrap();
        let urls = target.resolve().await.expect("localhost resolves");
        assert!(urls.contains("http://127.0.0.1:9000"), "{urls:?}");
    }
}
