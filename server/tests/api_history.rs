//! Conversation history through the real router, on SQLite and on Postgres: list, read, rename,
//! delete, search with snippets, export; and no account sees another's.

mod common;

use axum::http::{header, Method};
use common::api::{account, accounts_state_on, call, ok, Auth};
use serde_json::{json, Value};

/// Say `message` as `user` (in `conversation` when given); returns the conversation id.
async fn say(s: &server::AppState, auth: &Auth, user: &str, message: &str, conversation: Option<&str>) -> String {
    let mut body = json!({"user_id": user, "message": message});
    if let Some(c) = conversation {
        body["conversation_id"] = json!(c);
    }
    let reply = ok(s, auth, Method::POST, "/chat", Some(body)).await;
    // Lists order by the last message's millisecond: keep turns in distinct ones.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    reply["conversation_id"].as_str().unwrap().to_string()
}

fn hit_words(hit: &Value) -> Vec<String> {
    hit["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hit"] == true)
        .map(|p| p["text"].as_str().unwrap().to_lowercase())
        .collect()
}

on_both_databases! {
    async fn conversations_list_read_rename_and_page(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (_, alice) = account(&s, "alice").await;
        let first = say(&s, &alice, "u1", "Tell me about zebras", None).await;
        say(&s, &alice, "u1", "And their stripes?", Some(&first)).await;
        let second = say(&s, &alice, "u1", "Plan a picnic", None).await;
        let third = say(&s, &alice, "u2", "Hello from u2", None).await;

        let all = ok(&s, &alice, Method::GET, "/conversations", None).await;
        let ids: Vec<&str> = all["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()], "most recently active first");
        assert_eq!(all["next_offset"], Value::Null);
        let u1 = ok(&s, &alice, Method::GET, "/conversations?user_id=u1&limit=1", None).await;
        assert_eq!(u1["conversations"][0]["id"], second.as_str());
        assert_eq!(u1["next_offset"], 1);
        let page2 = ok(&s, &alice, Method::GET, "/conversations?user_id=u1&limit=1&offset=1", None).await;
        assert_eq!(page2["conversations"][0]["id"], first.as_str());
        let bad = call(&s, &alice, Method::GET, "/conversations?limit=lots", None).await;
        assert_eq!(bad.error_param(422).as_deref(), Some("limit"));
        assert_eq!(call(&s, &alice, Method::GET, "/conversations?limit=0", None).await.error_param(422).as_deref(), Some("limit"));

        let detail = ok(&s, &alice, Method::GET, &format!("/conversations/{first}"), None).await;
        assert_eq!(detail["conversation"]["title"], "Tell me about zebras");
        let messages = detail["messages"].as_array().unwrap();
        let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        let reply = &messages[1];
        assert_eq!(reply["content"], "You said: Tell me about zebras");
        assert!(reply["reasoning"].as_str().unwrap().starts_with("The user wrote"), "{reply}");
        assert!(reply["model"].as_str().is_some() && reply["completion_tokens"].as_u64().unwrap() > 0, "{reply}");
        assert_eq!(reply["finish_reason"], "eos");

        let renamed = ok(&s, &alice, Method::PATCH, &format!("/conversations/{first}"), Some(json!({"title": "Zebra facts"}))).await;
        assert_eq!(renamed["title"], "Zebra facts");
        let empty = call(&s, &alice, Method::PATCH, &format!("/conversations/{first}"), Some(json!({"title": "  "}))).await;
        assert_eq!(empty.error_param(422).as_deref(), Some("title"));
    }

    async fn search_finds_titles_and_messages_with_marked_snippets(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;
        let zebra = say(&s, &alice, "u1", "Zebras have stripes", None).await;
        say(&s, &alice, "u1", "Why are the stripes black and white?", Some(&zebra)).await;
        say(&s, &alice, "u2", "Tell me about lions", None).await;
        say(&s, &bob, "u1", "Bob likes zebras too", None).await;

        let found = ok(&s, &alice, Method::GET, "/search?q=stripes", None).await;
        let hits = found["hits"].as_array().unwrap();
        assert!(hits.iter().all(|h| h["conversation_id"] == zebra.as_str()), "only alice's zebra talk: {found}");
        let title_hits = hits.iter().filter(|h| h["message_id"].is_null()).count();
        assert_eq!(title_hits, 1, "the title matches once: {found}");
        let message_hits = hits.iter().filter(|h| !h["message_id"].is_null()).count();
        assert_eq!(message_hits, 4, "two questions and the two echoes: {found}");
        assert!(hits.iter().all(|h| hit_words(h).iter().all(|w| w == "stripes")), "{found}");
        assert!(hits.iter().all(|h| !hit_words(h).is_empty()), "{found}");

        // Every word must match; words match as prefixes; case and punctuation do not matter.
        let both = ok(&s, &alice, Method::GET, "/search?q=BLACK%20whi", None).await;
        let words: Vec<Vec<String>> = both["hits"].as_array().unwrap().iter().map(hit_words).collect();
        assert!(!words.is_empty() && words.iter().all(|w| w.contains(&"black".to_string()) && w.contains(&"white".to_string())), "{both}");
        assert_eq!(ok(&s, &alice, Method::GET, "/search?q=zebra%20lions", None).await["hits"], json!([]));
        // Reasoning is not part of the text searched; bob's zebra is bob's.
        assert_eq!(ok(&s, &alice, Method::GET, "/search?q=echo", None).await["hits"], json!([]));
        let bobs = ok(&s, &bob, Method::GET, "/search?q=zebras", None).await;
        assert!(bobs["hits"].as_array().unwrap().iter().all(|h| h["conversation_id"] != zebra.as_str()), "{bobs}");
        let u2 = ok(&s, &alice, Method::GET, "/search?q=lions&user_id=u1", None).await;
        assert_eq!(u2["hits"], json!([]), "user filter");
        // Operators are just words: nothing to inject.
        let odd = ok(&s, &alice, Method::GET, "/search?q=%22stripes%22%20OR%20NEAR(", None).await;
        assert_eq!(odd["hits"], json!([]), "every word must appear, `or` and `near` included");
        assert_eq!(call(&s, &alice, Method::GET, "/search?q=%20%2C", None).await.error_param(422).as_deref(), Some("q"));
        // Words of any script are looked for; a query of only emoji finds nothing (the document's
        // pattern, ASCII `\w` in JSON Schema, cannot tell letters from symbols outside ASCII).
        assert_eq!(ok(&s, &alice, Method::GET, "/search?q=%F0%92%81%9E", None).await["hits"], json!([]));
        assert_eq!(ok(&s, &alice, Method::GET, "/search?q=%F0%9F%98%80", None).await["hits"], json!([]));
        assert_eq!(call(&s, &alice, Method::GET, "/search", None).await.error_param(422).as_deref(), Some("q"));
    }

    async fn export_and_delete_and_nobody_else_can(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;
        let c = say(&s, &alice, "u1", "Hello there", None).await;
        let pic = ok(&s, &alice, Method::POST, "/chat", Some(json!({"user_id": "u1", "message": "/imagine a fox", "conversation_id": c, "image": {"width": 256, "height": 256, "num_inference_steps": 2}}))).await;
        let image_id = pic["image_job"]["job_id"].as_str().unwrap().to_string();
        for _ in 0..200 {
            if ok(&s, &alice, Method::GET, &format!("/jobs/{image_id}"), None).await["status"] == "done" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let detail = ok(&s, &alice, Method::GET, &format!("/conversations/{c}"), None).await;
        assert_eq!(detail["messages"][3]["image_ids"], json!([image_id]), "{detail}");

        let md = call(&s, &alice, Method::GET, &format!("/conversations/{c}/export?format=markdown"), None).await;
        assert_eq!(md.status, 200);
        assert_eq!(md.headers[header::CONTENT_DISPOSITION], format!("attachment; filename=\"conversation-{c}.md\"").as_str());
        let text = String::from_utf8(md.body.clone()).unwrap();
        assert!(text.starts_with("# Hello there\n"), "{text}");
        assert!(text.contains("<details><summary>Thinking</summary>") && text.contains("You said: Hello there"), "{text}");
        assert!(text.contains(&format!("(/images/{image_id}.png)")), "{text}");
        let js = call(&s, &alice, Method::GET, &format!("/conversations/{c}/export"), None).await;
        assert_eq!(js.json()["messages"].as_array().unwrap().len(), 4);
        assert_eq!(call(&s, &alice, Method::GET, &format!("/conversations/{c}/export?format=pdf"), None).await.error_param(422).as_deref(), Some("format"));

        for (method, uri, body) in [
            (Method::GET, format!("/conversations/{c}"), None),
            (Method::PATCH, format!("/conversations/{c}"), Some(json!({"title": "mine now"}))),
            (Method::DELETE, format!("/conversations/{c}"), None),
            (Method::GET, format!("/conversations/{c}/export"), None),
        ] {
            assert_eq!(call(&s, &bob, method.clone(), &uri, body).await.status, 404, "bob {method} {uri}");
        }
        assert_eq!(ok(&s, &bob, Method::GET, "/conversations", None).await["conversations"], json!([]));

        assert_eq!(call(&s, &alice, Method::DELETE, &format!("/conversations/{c}"), None).await.status, 204);
        assert_eq!(call(&s, &alice, Method::GET, &format!("/conversations/{c}"), None).await.status, 404);
        assert_eq!(call(&s, &alice, Method::DELETE, &format!("/conversations/{c}"), None).await.status, 404);
        assert_eq!(ok(&s, &alice, Method::GET, "/search?q=hello", None).await["hits"], json!([]));
        assert_eq!(call(&s, &alice, Method::GET, &format!("/images/{image_id}.png"), None).await.status, 200, "the picture stays");
    }

    async fn chat_settings_are_kept_with_a_conversation_and_used_by_its_turns(backend) {
        let dir = tempfile::tempdir().unwrap();
        let s = accounts_state_on(backend, dir.path(), &[]).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;
        let turn = |c: &str, extra: Value| {
            let mut body = json!({"user_id": "u1", "message": "one two three", "conversation_id": c});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        let c = say(&s, &alice, "u1", "one two three", None).await;
        let plain = ok(&s, &alice, Method::POST, "/chat", Some(turn(&c, json!({})))).await;
        let detail = ok(&s, &alice, Method::GET, &format!("/conversations/{c}"), None).await;
        assert_eq!(detail["conversation"]["settings"], json!({"system_prompt": null, "temperature": null, "top_p": null, "max_tokens": null}));

        // Bad values name the field; nothing changes.
        for (settings, field) in [
            (json!({"temperature": 2.5}), "settings.temperature"),
            (json!({"top_p": 0}), "settings.top_p"),
            (json!({"max_tokens": 0}), "settings.max_tokens"),
            (json!({"system_prompt": "x".repeat(4001)}), "settings.system_prompt"),
            (json!({"system_prompt": "bell\u{7}"}), "settings.system_prompt"),
        ] {
            let reply = call(&s, &alice, Method::PATCH, &format!("/conversations/{c}"), Some(json!({"settings": settings}))).await;
            assert_eq!(reply.error_param(422).as_deref(), Some(field), "{settings}");
            let reply = call(&s, &alice, Method::POST, "/chat", Some(turn(&c, json!({"settings": settings})))).await;
            assert_eq!(reply.error_param(422).as_deref(), Some(field), "{settings}");
        }
        assert_eq!(call(&s, &alice, Method::PATCH, &format!("/conversations/{c}"), Some(json!({}))).await.error_param(422).as_deref(), Some("title"));

        // Kept: the system prompt is added to Duet's (the mock counts words as tokens), the reply
        // length holds until a turn sets its own.
        let settings = json!({"system_prompt": "  Answer like a pirate, briefly.  ", "temperature": 0.3, "top_p": 0.9, "max_tokens": 2});
        let updated = ok(&s, &alice, Method::PATCH, &format!("/conversations/{c}"), Some(json!({"settings": settings}))).await;
        assert_eq!(updated["settings"]["system_prompt"], "Answer like a pirate, briefly.");
        assert_eq!(updated["title"], "one two three", "the title stays");
        // Another account's PATCH is "not found" and changes nothing.
        assert_eq!(call(&s, &bob, Method::PATCH, &format!("/conversations/{c}"), Some(json!({"settings": {}}))).await.status, 404);
        let short = ok(&s, &alice, Method::POST, "/chat", Some(turn(&c, json!({})))).await;
        assert_eq!((short["usage"]["completion_tokens"].as_u64(), short["finish_reason"].as_str()), (Some(2), Some("length")));
        let grown = short["usage"]["prompt_tokens"].as_u64().unwrap() - plain["usage"]["prompt_tokens"].as_u64().unwrap();
        assert!(grown >= 5, "the system prompt's 5 words and the history grow the prompt: {grown}");
        let own = ok(&s, &alice, Method::POST, "/chat", Some(turn(&c, json!({"max_tokens": 3})))).await;
        assert_eq!(own["usage"]["completion_tokens"], 3, "the turn's own max_tokens wins");
        let detail = ok(&s, &alice, Method::GET, &format!("/conversations/{c}"), None).await;
        assert_eq!(detail["conversation"]["settings"]["max_tokens"], 2, "a turn's own values are not kept");
        assert_eq!(detail["conversation"]["settings"]["temperature"], 0.3);

        // Given with a first message: a new conversation keeps them.
        let first = ok(&s, &alice, Method::POST, "/chat",
                       Some(json!({"user_id": "u1", "message": "hello there", "settings": {"max_tokens": 1}}))).await;
        assert_eq!(first["usage"]["completion_tokens"], 1);
        let id = first["conversation_id"].as_str().unwrap();
        let listed = ok(&s, &alice, Method::GET, "/conversations", None).await;
        let kept = listed["conversations"].as_array().unwrap().iter().find(|x| x["id"] == id).unwrap();
        assert_eq!(kept["settings"]["max_tokens"], 1);
        // Null fields go back to the model's defaults.
        let reset = ok(&s, &alice, Method::PATCH, &format!("/conversations/{id}"), Some(json!({"settings": {}}))).await;
        assert_eq!(reset["settings"]["max_tokens"], Value::Null);
    }
}
