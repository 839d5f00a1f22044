//! Registry base URLs: http(s), a host, nothing after it (the API lives under /v2/), no
//! credentials in the URL; plain HTTP only to loopback unless the config allows it.

use url::Url;

use super::{invalid, ConfigError};

/// Checks a registry base URL: http(s), a host, no path, query or credentials.
pub(super) fn parse_registry_url(text: &str, allow_plain_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        invalid(format!(
            "registry: invalid URL {text:?}: {e} (expected e.g. https://registry.example.com)"
        ))
    })?;
    let Some(host) = url.host_str() else {
        return Err(invalid(format!("registry: URL {text:?} has no host")));
    };
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if !loopback && !allow_plain_http {
                return Err(invalid(format!(
                    "registry: {text:?} uses plain HTTP to a host that is not loopback; use https, or set allow_plain_http: true"
                )));
            }
        }
        other => {
            return Err(invalid(format!(
                "registry: URL {text:?} has scheme {other:?}; expected http or https"
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "registry: URL {:?} must not carry credentials; use auth",
            url.origin().ascii_serialization()
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "registry: URL {text:?} must have no path or query (the API is under /v2/)"
        )));
    }
    Ok(url)
}

/// "host" or "host:port" as Docker's config.json keys it.
pub(super) fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_plain_http_to_a_remote_registry_unless_allowed() {
        let e = parse_registry_url("http://registry.example.com", false).expect_err("refused");
        assert!(e.to_string().contains("plain HTTP"), "{e}");
        parse_registry_url("http://registry.example.com", true).expect("allowed");
        parse_registry_url("http://localhost:5000", false).expect("loopback");
        parse_registry_url("http://[::1]:5000", false).expect("loopback v6");
    }
}
