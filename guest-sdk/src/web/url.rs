//! The native half of `URL` and `URLSearchParams`: WHATWG URL parsing and
//! the URL API's setters from the `url` crate (its `quirks` module follows
//! the standard's API section), and `application/x-www-form-urlencoded`
//! from `form_urlencoded`.

use url::{Url, quirks};

/// A URL's parts in the order `url.js` reads them: href, origin, protocol,
/// username, password, host, hostname, port, pathname, search, hash.
fn parts(url: &Url) -> Vec<String> {
    vec![
        quirks::href(url).to_owned(),
        quirks::origin(url),
        quirks::protocol(url).to_owned(),
        quirks::username(url).to_owned(),
        quirks::password(url).to_owned(),
        quirks::host(url).to_owned(),
        quirks::hostname(url).to_owned(),
        quirks::port(url).to_owned(),
        quirks::pathname(url).to_owned(),
        quirks::search(url).to_owned(),
        quirks::hash(url).to_owned(),
    ]
}

/// Parses `input` against the optional `base`; `None` when either fails.
pub fn parse(input: String, base: Option<String>) -> Option<Vec<String>> {
    let base = match base {
        Some(base) => Some(Url::parse(&base).ok()?),
        None => None,
    };
    let url = Url::options().base_url(base.as_ref()).parse(&input).ok()?;
    Some(parts(&url))
}

/// Applies the URL API setter `field` to the URL `href`; `None` only when
/// setting `href` to something that does not parse (other setters ignore
/// bad values, as the standard says).
pub fn set(href: String, field: String, value: String) -> Option<Vec<String>> {
    let mut url = Url::parse(&href).ok()?;
    let outcome = match field.as_str() {
        "href" => quirks::set_href(&mut url, &value).map_err(|_| ()),
        "protocol" => quirks::set_protocol(&mut url, &value),
        "username" => quirks::set_username(&mut url, &value),
        "password" => quirks::set_password(&mut url, &value),
        "host" => quirks::set_host(&mut url, &value),
        "hostname" => quirks::set_hostname(&mut url, &value),
        "port" => quirks::set_port(&mut url, &value),
        "pathname" => {
            quirks::set_pathname(&mut url, &value);
            Ok(())
        }
        "search" => {
            quirks::set_search(&mut url, &value);
            Ok(())
        }
        "hash" => {
            quirks::set_hash(&mut url, &value);
            Ok(())
        }
        _ => Ok(()),
    };
    if field == "href" && outcome.is_err() {
        return None;
    }
    Some(parts(&url))
}

/// Parses a query string into a flat list of name, value, name, value...
pub fn form_parse(query: String) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .flat_map(|(name, value)| [name.into_owned(), value.into_owned()])
        .collect()
}

/// Serializes a flat list of name, value, name, value... as a query string.
pub fn form_serialize(pairs: Vec<String>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for pair in pairs.chunks(2) {
        if let [name, value] = pair {
            serializer.append_pair(name, value);
        }
    }
    serializer.finish()
}
