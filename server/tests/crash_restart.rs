//! Kill -9 the real server process in the middle of a streamed reply, start it again on the same
//! data, and find every acknowledged message and finished image intact, and the cut-off reply
//! marked interrupted: on SQLite and Postgres.

mod common;

use common::process::{free_port, server_command, ServerProcess};
use serde_json::json;

async fn start(data: &std::path::Path, database_url: &str) -> ServerProcess {
    let port = free_port();
    let mut command = server_command(port);
    command
        .args(["--data-dir", data.to_str().unwrap(), "--database-url", database_url])
        .args(["--use-mocks", "true", "--auth-required", "false"])
        .args(["--mock-token-ms", "40", "--mock-image-step-ms", "1", "--process-heartbeat-ms", "300"]);
    ServerProcess::start(command, port).await
}

async fn database_url(backend: common::Backend, data: &std::path::Path) -> String {
    match backend {
        common::Backend::Sqlite => format!("sqlite://{}/duet.db", data.display()),
        common::Backend::Postgres => common::postgres::fresh_database().await,
    }
}

on_both_databases! {
    async fn a_killed_server_keeps_every_acknowledged_message_and_image(backend) {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(backend, dir.path()).await;
        let server = start(dir.path(), &url).await;

        // Acknowledged before the crash: one finished image, one whole turn.
        let image = server.json("POST", "/image?wait=true", Some(json!({"prompt": "a lighthouse", "width": 256, "height": 256}))).await;
        assert_eq!(image["status"], "done");
        let image_id = image["job_id"].as_str().unwrap().to_string();
        let (_, png_before) = server.request("GET", &format!("/images/{image_id}.png"), None).await;
        let first = server.json("POST", "/chat", Some(json!({"user_id": "u1", "message": "first question"}))).await;
        let conversation = first["conversation_id"].as_str().unwrap().to_string();

        // A streamed reply, killed once a few tokens have gone out.
        let ask = json!({"user_id": "u1", "message": "second question, please answer slowly", "conversation_id": conversation, "stream": true});
        let mut stream = server.send("POST", "/chat", Some(&ask)).await.unwrap();
        let mut text = String::new();
        let mut seen = 0;
        while let Ok(Some(chunk)) = stream.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            seen = text.matches("event: reasoning").count();
            if seen >= 3 {
                break;
            }
        }
        assert!(seen >= 3, "the reply streamed before the kill: {text}");
        let started = common::api::parse_sse(&text).into_iter().find(|(e, _)| e == "start").expect("a start event").1;
        server.kill();

        let again = start(dir.path(), &url).await;
        // SQLite (one server's file): marked at start. Postgres (perhaps shared with servers still
        // writing): marked by a live server once the killed one has missed three heartbeats.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let detail = loop {
            let detail = again.json("GET", &format!("/conversations/{conversation}"), None).await;
            if detail["messages"].as_array().unwrap().len() >= 4 || std::time::Instant::now() > deadline {
                break detail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let said: Vec<(String, String)> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(said[..3], [
            ("user".to_string(), "first question".to_string()),
            ("assistant".to_string(), "You said: first question".to_string()),
            ("user".to_string(), "second question, please answer slowly".to_string()),
        ], "{detail}");
        let reply = detail["messages"].as_array().unwrap().get(3).cloned().expect("a reply marks the cut-off turn");
        assert_eq!((reply["role"].as_str(), reply["content"].as_str()), (Some("assistant"), Some("")), "{detail}");
        assert_eq!(reply["finish_reason"], "interrupted", "{detail}");
        assert_eq!(reply["id"], started["message_id"], "stored under the id its stream announced: {detail}");
        let (status, png_after) = again.request("GET", &format!("/images/{image_id}.png"), None).await;
        assert_eq!((status, png_after == png_before), (200, true), "the finished image is intact");
        let gallery = again.json("GET", "/gallery", None).await;
        assert_eq!(gallery["images"][0]["id"], image_id.as_str());
        // And the conversation goes on.
        let next = again.json("POST", "/chat", Some(json!({"user_id": "u1", "message": "third", "conversation_id": conversation}))).await;
        assert_eq!(next["reply"], "You said: third");
    }
}
