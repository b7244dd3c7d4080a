//! Every HTTP answer counted by route, method and status, and timed to its head (only when
//! metrics are on: the layer is not there otherwise).

use crate::telemetry::{
    catalogue::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS},
    Raised,
};
use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use std::time::Instant;

pub async fn record(req: Request, next: Next) -> Response {
    // The route that matched, never the raw path: ids and probes would make a series each.
    let route = req.extensions().get::<MatchedPath>().map_or("(fallback)", MatchedPath::as_str).to_string();
    let method = method_label(req.method());
    let started = Instant::now();
    let in_flight = Raised::new(metrics::gauge!(HTTP_IN_FLIGHT));
    let res = next.run(req).await;
    drop(in_flight);
    let status = res.status().as_str().to_string();
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    res
}

/// The standard methods by name; anything else (a fuzzer's invention) as `other`, so the label
/// stays a short list.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
