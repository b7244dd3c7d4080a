//! Host names and addresses: which ones this server answers for (pure; the middleware that
//! refuses the rest is `edge::hosts`).

use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    any: bool,
    /// Normalized host names and addresses (see [`normalize`]).
    names: Vec<String>,
}

impl AllowedHosts {
    /// Host names and addresses answered besides loopback (`*`: any).
    pub fn new(hosts: &[String]) -> AllowedHosts {
        let names: Vec<String> = hosts.iter().map(|h| normalize(h)).collect();
        AllowedHosts { any: names.iter().any(|n| n == "*"), names }
    }

    /// Whether a request addressed to `host` (a `Host` header value) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        self.any || is_loopback_host(&host) || self.names.contains(&host)
    }
}

/// A host as compared: lower case, without port, brackets or a final dot.
pub fn normalize(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let bare = match host.strip_prefix('[') {
        // `[::1]:3000` or `[::1]`
        Some(rest) => rest.split(']').next().unwrap_or_default().to_string(),
        None => match host.rsplit_once(':') {
            // `name:3000`, but not an IPv6 address without brackets
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            _ => host,
        },
    };
    bare.trim_end_matches('.').to_string()
}

/// `localhost`, a name under `.localhost` (RFC 6761: always this machine), or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = normalize(host);
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback())
}

pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(authority.rsplit_once('@').map_or(authority, |(_, h)| h)).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> AllowedHosts {
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        AllowedHosts { any: names.iter().any(|n| n == "*"), names }
    }

    #[test]
    fn loopback_names_and_addresses_are_always_answered() {
        let none = hosts(&[]);
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "app.localhost",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.8.9.1",
            "[::1]:3000",
            "[::1]",
            "localhost.",
        ] {
            assert!(none.allows(host), "{host}");
        }
        for host in
            ["evil.example", "evil.example:3000", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.5", "[::2]", ""]
        {
            assert!(!none.allows(host), "{host}");
        }
    }

    #[test]
    fn configured_hosts_are_answered_whatever_the_port_or_case() {
        let some = hosts(&["Duet.Example.com", "192.168.1.20:3000", "[fe80::1]"]);
        assert!(some.allows("duet.example.com") && some.allows("DUET.example.com:8443"));
        assert!(some.allows("192.168.1.20") && some.allows("[fe80::1]:3000"));
        assert!(!some.allows("sub.duet.example.com") && !some.allows("example.com"));
        assert!(hosts(&["*"]).allows("anything.example"));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize("Example.COM:443"), "example.com");
        assert_eq!(normalize("[::1]:3000"), "::1");
        assert_eq!(normalize("::1"), "::1");
        assert_eq!(normalize("host.example."), "host.example");
        assert_eq!(url_host("https://user@duet.example.com:8443/path"), Some("duet.example.com:8443"));
        assert_eq!(url_host("duet.example.com"), None);
    }
}
