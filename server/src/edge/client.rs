//! The client's address: the connection's peer, or, when that peer is a trusted reverse proxy
//! (`TRUSTED_PROXIES`), the address it forwarded in `X-Forwarded-For`. Read right to left, the
//! first hop that is not a trusted proxy is the client (the left part of the header is whatever
//! the client wrote, so it is never believed). Stored in the request's extensions as
//! `app::ssr::ClientAddr` for the REST handlers and the pages' server functions alike.

use crate::service::AppState;
use app::ssr::ClientAddr;
use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::Response,
};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

pub async fn client_addr(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(client) = peer.map(|peer| resolve(peer, req.headers(), &state.config.server.trusted_proxies)) {
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

/// The client behind `peer`, given the forwarding headers and the trusted proxies.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| parse_hop(hop.trim()))
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        // Not a proxy: its own header is ignored.
        assert_eq!(resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &proxies), ip("203.0.113.9"));
        assert_eq!(resolve(ip("203.0.113.9"), &xff(&["1.2.3.4"]), &[]), ip("203.0.113.9"));
        // A proxy: the rightmost hop that is not one of ours; what the client wrote before it is not believed.
        assert_eq!(resolve(ip("10.0.0.2"), &xff(&["6.6.6.6, 198.51.100.7"]), &proxies), ip("198.51.100.7"));
        assert_eq!(resolve(ip("10.0.0.2"), &xff(&["6.6.6.6", "198.51.100.7, 10.0.0.3"]), &proxies), ip("198.51.100.7"));
        assert_eq!(resolve(ip("::1"), &xff(&["[2001:db8::5]:443"]), &proxies), ip("2001:db8::5"));
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.2"), &xff(&[]), &proxies), ip("10.0.0.2"));
        assert_eq!(resolve(ip("10.0.0.2"), &xff(&["not an address"]), &proxies), ip("10.0.0.2"));
        // IPv4 seen as IPv6 on a dual-stack socket is the same address.
        assert_eq!(resolve(ip("::ffff:203.0.113.9"), &xff(&[]), &[]), ip("203.0.113.9"));
    }
}
