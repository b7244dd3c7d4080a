//! The OpenAPI document covers every REST route with its errors, and the docs page renders it.

mod common;

use common::api::{get, mock_state};

/// Every REST route the router serves (keep in step with routes.rs).
const ROUTES: [(&str, &str); 39] = [
    ("get", "/health"),
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("get", "/auth/me"),
    ("get", "/quota"),
    ("get", "/account/keys"),
    ("post", "/account/keys"),
    ("delete", "/account/keys/{id}"),
    ("get", "/admin/accounts"),
    ("post", "/admin/accounts"),
    ("patch", "/admin/accounts/{id}"),
    ("get", "/conversations"),
    ("get", "/conversations/{id}"),
    ("patch", "/conversations/{id}"),
    ("delete", "/conversations/{id}"),
    ("get", "/conversations/{id}/export"),
    ("get", "/search"),
    ("get", "/templates"),
    ("post", "/templates"),
    ("delete", "/templates/{id}"),
    ("get", "/gallery"),
    ("get", "/gallery/{id}"),
    ("delete", "/gallery/{id}"),
    ("get", "/gallery/{id}/download"),
    ("post", "/gallery/zip"),
    ("post", "/gallery/{id}/shares"),
    ("get", "/gallery/{id}/shares"),
    ("delete", "/shares/{id}"),
    ("get", "/s/{token}"),
    ("post", "/chat"),
    ("post", "/image"),
    ("get", "/jobs/{id}"),
    ("delete", "/jobs/{id}"),
    ("get", "/jobs/{id}/events"),
    ("get", "/images/{file}"),
    ("get", "/v1/models"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/images/generations"),
];

#[tokio::test]
async fn every_route_is_documented_with_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = mock_state(dir.path(), &[]).await;
    let res = get(&state, "/api/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = 0;
    for (method, path) in doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
    {
        assert!(ROUTES.contains(&(method.as_str(), path.as_str())), "documented but not served: {method} {path}");
        documented += 1;
    }
    assert_eq!(documented, ROUTES.len(), "every served route is documented");
    for (method, path) in ROUTES {
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
    for (_, path) in ROUTES {
        assert!(html.contains(&format!("<code>{path}</code>")), "{path} not on the page");
    }
}
