//! Prompt templates: saved, listed in order, deleted; checked input; one account's never shown to
//! or deletable by another.

mod common;

use axum::http::Method;
use common::api::{account, call, mock_state_on, Auth};
use serde_json::{json, Value};

on_both_databases! {
async fn templates_are_saved_listed_deleted_and_private(backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = mock_state_on(backend, dir.path(), &["--auth-required", "true"]).await;
    let (alice, _) = account(&s, "alice").await;
    let (bob, _) = account(&s, "bob").await;
    let make = |who: &Auth, body: Value| {
        let (s, who) = (s.clone(), who.clone());
        async move { call(&s, &who, Method::POST, "/templates", Some(body)).await }
    };
    let first = make(&alice, json!({"name": " Haiku ", "body": "Write a haiku about "})).await;
    assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.body));
    let first = first.json();
    assert_eq!((first["name"].as_str(), first["body"].as_str()), (Some("Haiku"), Some("Write a haiku about ")));
    make(&alice, json!({"name": "Photo", "body": "a photo of"})).await;

    let list = call(&s, &alice, Method::GET, "/templates", None).await.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Haiku", "Photo"], "in the order they were made");
    assert_eq!(call(&s, &bob, Method::GET, "/templates", None).await.json(), json!([]), "bob sees none of them");

    for (body, field) in [
        (json!({"body": "x"}), "name"),
        (json!({"name": "  ", "body": "x"}), "name"),
        (json!({"name": "n"}), "body"),
        (json!({"name": "n", "body": "y".repeat(4001)}), "body"),
    ] {
        assert_eq!(make(&alice, body).await.error_param(422), Some(field.into()));
    }

    let id = first["id"].as_str().unwrap();
    let path = format!("/templates/{id}");
    assert_eq!(call(&s, &bob, Method::DELETE, &path, None).await.status, 404, "not bob's to delete");
    assert_eq!(call(&s, &alice, Method::DELETE, &path, None).await.status, 204);
    assert_eq!(call(&s, &alice, Method::DELETE, &path, None).await.status, 404);
    let left = call(&s, &alice, Method::GET, "/templates", None).await.json();
    assert_eq!(left.as_array().unwrap().len(), 1);
}
}
