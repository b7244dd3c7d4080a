//! Cross-site request forgery guard for browser requests, by the standard headers (the approach
//! of OWASP's "verify origin" defence and Go's `CrossOriginProtection`): a state-changing request
//! is refused when the browser says it comes from another site. Bearer-key requests are exempt,
//! since a browser never adds that header on its own; requests with neither `Sec-Fetch-Site` nor
//! `Origin` do not come from a browser that could be tricked, and the session cookie is
//! `SameSite=Lax` besides.

use axum::http::{header, HeaderMap, Method};

/// Why a request was refused, for the error message.
pub fn cross_origin(method: &Method, headers: &HeaderMap, trusted: &[String]) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    cross_site(headers, trusted)
}

/// The same check whatever the method: for a WebSocket upgrade, a GET that opens a channel able
/// to do what a POST does.
pub fn cross_site(headers: &HeaderMap, trusted: &[String]) -> Option<String> {
    if headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let origin = text(header::ORIGIN);
    if origin.is_some_and(|o| trusted.iter().any(|t| t.eq_ignore_ascii_case(o))) {
        return None;
    }
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" | "none" => None,
            other => Some(format!("cross-origin request refused (Sec-Fetch-Site: {other})")),
        };
    }
    let origin = origin?;
    let host = text(header::HOST).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        None
    } else {
        Some(format!("cross-origin request refused (Origin {origin} is not this server, {host})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn refuses_only_state_changes_a_browser_says_come_from_elsewhere() {
        let post = Method::POST;
        let none: &[String] = &[];
        let host = ("host", "duet.local:3000");
        // Safe methods and bearer requests pass whatever they say.
        assert_eq!(cross_origin(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")]), none), None);
        assert_eq!(
            cross_origin(&post, &headers(&[("authorization", "Bearer x"), ("origin", "https://evil")]), none),
            None
        );
        // Fetch metadata decides when present.
        assert_eq!(cross_origin(&post, &headers(&[("sec-fetch-site", "same-origin")]), none), None);
        assert_eq!(cross_origin(&post, &headers(&[("sec-fetch-site", "none")]), none), None);
        assert!(cross_origin(&post, &headers(&[("sec-fetch-site", "same-site")]), none).is_some());
        assert!(cross_origin(&post, &headers(&[("sec-fetch-site", "cross-site"), host]), none).is_some());
        // Otherwise Origin must be this host.
        assert_eq!(cross_origin(&post, &headers(&[("origin", "http://duet.local:3000"), host]), none), None);
        assert!(cross_origin(&post, &headers(&[("origin", "http://evil.example"), host]), none).is_some());
        assert!(cross_origin(&post, &headers(&[("origin", "null"), host]), none).is_some());
        // Trusted origins pass; no browser headers at all passes (curl, SDKs).
        let trusted = ["https://ui.example".to_string()];
        assert_eq!(
            cross_origin(
                &post,
                &headers(&[("origin", "https://ui.example"), ("sec-fetch-site", "cross-site")]),
                &trusted
            ),
            None
        );
        assert_eq!(cross_origin(&post, &headers(&[host]), none), None);
    }

    #[test]
    fn a_websocket_upgrade_is_checked_whatever_its_method() {
        let none: &[String] = &[];
        let host = ("host", "duet.local:3000");
        assert!(cross_site(&headers(&[("origin", "http://evil.example"), host]), none).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site"), host]), none).is_some());
        assert_eq!(cross_site(&headers(&[("origin", "http://duet.local:3000"), host]), none), None);
        assert_eq!(cross_site(&headers(&[("authorization", "Bearer x"), ("origin", "http://evil")]), none), None);
        assert_eq!(cross_site(&headers(&[host]), none), None, "not a browser");
    }
}
