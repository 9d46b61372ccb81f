//! `Host` and `Origin` values: which may be echoed into a response, how an origin is
//! written the one way two of them compare, and which origins may open a WebSocket. Used
//! by `http.rs` for every request and by `config.rs` for `--allow-origin`.

/// A `Host` value safe to echo into headers: host name, IPv4 or bracketed IPv6, optional
/// port. Anything else (spaces, quotes, semicolons) is refused.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// `scheme://host[:port]` lower-cased with the scheme's default port dropped; `None` when
/// it is not such an origin.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/');
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    if !valid_host(rest) {
        return None;
    }
    // host[:port]: a host that is not empty (a colon only inside an IPv6 literal), and a
    // port of digits only.
    let (name, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let bad_port = port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()));
    let literal = name.starts_with('[') && name.ends_with(']');
    if name.is_empty() || (name.contains(':') && !literal) || bad_port {
        return None;
    }
    let name = name.to_ascii_lowercase();
    match port {
        Some(p) if p != &default_port[1..] => Some(format!("{scheme}://{name}:{p}")),
        _ => Some(format!("{scheme}://{name}")),
    }
}

/// Whether a WebSocket upgrade with this `Origin` may proceed: no Origin (native client),
/// the page's own origin (`https://` + Host), or an `--allow-origin` entry.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    let own = host.and_then(|h| normalize_origin(&format!("https://{h}")));
    own.as_deref() == Some(origin.as_str()) || allowed.contains(&origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: `https://:443` became `https://`, an origin without a host, and
    /// `https://a:443:443` normalized differently a second time.
    #[test]
    fn origin_needs_a_host_and_a_numeric_port() {
        for bad in [
            "HTTPS://:443",
            "https://:8443",
            "https://a:443:443",
            "https://a:",
            "https://a:x",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        for (good, want) in [
            ("https://[::1]:443", "https://[::1]"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("http://Pi:80", "http://pi"),
        ] {
            assert_eq!(normalize_origin(good).as_deref(), Some(want), "{good}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            normalize_origin("HTTPS://Pi.Local:443").as_deref(),
            Some("https://pi.local")
        );
        assert_eq!(
            normalize_origin("https://pi.local:8443/").as_deref(),
            Some("https://pi.local:8443")
        );
        assert!(origin_allowed(None, Some("x"), &[]));
        assert!(origin_allowed(
            Some("https://PI.local"),
            Some("pi.local:443"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            Some("pi.local"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("http://pi.local"),
            Some("pi.local"),
            &[]
        ));
        assert!(!origin_allowed(Some("null"), Some("pi.local"), &[]));
        let allow = vec!["https://kiosk.lan:8443".to_string()];
        assert!(origin_allowed(
            Some("https://kiosk.lan:8443"),
            Some("pi.local"),
            &allow
        ));
    }
}
