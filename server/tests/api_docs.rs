//! The OpenAPI document covers every REST route with its errors, and the docs page renders it.

mod common;

use axum::http::Method;
use common::api::{get, mock_state, send};
use std::collections::BTreeSet;

/// The paths an axum router serves, read from its `Debug` form (axum has no public list): the
/// `RouteId(n): "/path"` pairs of its path router, before its fallback router.
fn served_paths(router: &axum::Router<server::AppState>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let text = &text[..text.find("fallback_router").expect("axum's Router debug names its fallback router")];
    let mut paths = BTreeSet::new();
    for piece in text.split("RouteId(").skip(1) {
        let digits = piece.chars().take_while(char::is_ascii_digit).count();
        if let Some(rest) = piece[digits..].strip_prefix("): \"") {
            paths.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    paths
}

/// Every documented (method, path), from the one declaration the server routes from.
fn routes() -> Vec<(String, String)> {
    let doc = server::api::openapi::document();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
        .collect()
}

/// A route served but not documented, or documented but not served, fails here: both the router
/// and the document's paths come from `api::routes()`, and this checks them against each other.
#[test]
fn the_router_serves_exactly_the_documented_paths() {
    let server::api::Routes { public, protected } = server::api::routes();
    let (public, public_doc) = public.split_for_parts();
    let (protected, protected_doc) = protected.split_for_parts();
    let mut served = served_paths(&public);
    served.extend(served_paths(&protected));
    let documented: BTreeSet<String> =
        public_doc.paths.paths.keys().chain(protected_doc.paths.paths.keys()).cloned().collect();
    assert!(served.len() >= 30 && served.contains("/health") && served.contains("/v1/chat/completions"), "{served:?}");
    assert_eq!(served, documented, "served paths against documented paths");
    let served_doc: BTreeSet<String> =
        server::api::openapi::document()["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(served_doc, documented, "the document /api/openapi.json serves");
}

/// Every documented operation is answered by the app that is served, not by its fallback (a
/// page 404) or with 405.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state(dir.path(), &[]).await;
    for (method, path) in routes() {
        let uri = path
            .replace("{id}", "00000000-0000-4000-8000-000000000000")
            .replace("{token}", "x")
            .replace("{file}", "x.png");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = send(&state, method.clone(), &uri, None).await;
        assert_ne!(res.status, 405, "{method} {path}");
        let html = res.headers.get("content-type").is_some_and(|t| t.to_str().unwrap().starts_with("text/html"));
        assert!(!(res.status == 404 && html), "{method} {path}: answered by the pages' fallback");
    }
}

#[tokio::test]
async fn every_route_is_documented_with_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state(dir.path(), &[]).await;
    let res = get(&state, "/api/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(&doc, server::api::openapi::document(), "the document served is the one built from the routes");
    for (method, path) in routes() {
        let (method, path) = (method.as_str(), path.as_str());
        let op = &doc["paths"][path][method];
        let responses = op["responses"].as_object().unwrap();
        if op.get("requestBody").is_some() {
            for status in ["400", "415", "422"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
        }
        let generates = ["/chat", "/image", "/v1/chat/completions", "/v1/images/generations"].contains(&path);
        if generates {
            assert!(responses.contains_key("503"), "{method} {path} lacks 503");
        }
        let public = path == "/health" || path == "/s/{token}" || path.starts_with("/auth/") && path != "/auth/me";
        assert_eq!(op["security"] == serde_json::json!([{}]), public, "{method} {path}: security {}", op["security"]);
        if !public {
            for status in ["401", "429"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
        }
        if path.contains('{') {
            assert!(responses.contains_key("404"), "{method} {path} lacks 404");
        }
    }
    // Every answer with a JSON body says its shape (the OpenAI-compatible ones too).
    let mut untyped = Vec::new();
    for (method, path) in routes() {
        for (status, response) in doc["paths"][&path][&method]["responses"].as_object().unwrap() {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                if media.contains("json") && content.get("schema").is_none() {
                    untyped.push(format!("{method} {path} {status} {media}"));
                }
            }
            if status.starts_with('2') && status != "204" && response.get("content").is_none() {
                untyped.push(format!("{method} {path} {status}: no content"));
            }
        }
    }
    assert!(untyped.is_empty(), "answers without a schema: {untyped:#?}");
    let schemas = [
        "ChatRequest",
        "ChatResponse",
        "ChatEvent",
        "ErrorBody",
        "ImageGenerationRequest",
        "JobInfo",
        "EngineActivity",
    ];
    for schema in schemas {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "schema {schema} missing");
    }
    // The shared types' field docs become descriptions.
    let steps = &doc["components"]["schemas"]["ImageGenerationRequest"]["properties"]["num_inference_steps"];
    assert!(steps["description"].as_str().unwrap().contains("1 to 100"), "{steps}");

    let page = get(&state, "/api/docs").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    for (_, path) in routes() {
        assert!(html.contains(&format!("<code>{path}</code>")), "{path} not on the page");
    }
}
