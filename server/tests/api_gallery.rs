//! The gallery through the real router, on SQLite and on Postgres, with pictures in the data
//! folder and in an S3-compatible server: search, date filters, paging, download, zip, share links
//! (opened without logging in, expiring, revoked), delete; and no account reaches another's images.

mod common;

use axum::http::{header, Method};
use common::api::{account, call, mock_state_on, ok, Auth};
use serde_json::{json, Value};
use std::io::Read;

/// Make an image and wait for it; returns its id.
async fn make(s: &server::AppState, auth: &Auth, prompt: &str, user: &str) -> String {
    let body = json!({"prompt": prompt, "user_id": user, "width": 256, "height": 256, "num_inference_steps": 2});
    let job = ok(s, auth, Method::POST, "/image?wait=true", Some(body)).await;
    assert_eq!(job["status"], "done", "{job}");
    // Lists order by creation millisecond: keep images in distinct ones.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    job["job_id"].as_str().unwrap().to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

on_every_store! {
    async fn gallery_lists_searches_filters_and_pages(backend, store) {
        let dir = tempfile::tempdir().unwrap();
        let flags = store.flags(&["--auth-required", "true"]);
        let s = mock_state_on(backend, dir.path(), &flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;
        let fox = make(&s, &alice, "a red fox in the snow", "u1").await;
        let whale = make(&s, &alice, "a blue whale", "u2").await;
        let sunset = make(&s, &alice, "Red sunset over hills", "u1").await;
        make(&s, &bob, "a red fox too", "u1").await;

        let all = ok(&s, &alice, Method::GET, "/gallery", None).await;
        assert_eq!(ids(&all), [sunset.as_str(), whale.as_str(), fox.as_str()], "newest first, alice's only");
        let first = &all["images"][2];
        assert_eq!(first["parameters"]["prompt"], "a red fox in the snow");
        assert_eq!((first["user_id"].as_str(), first["parameters"]["width"].as_u64()), (Some("u1"), Some(256)));
        assert_eq!(first["image_url"], format!("/images/{fox}.png"));

        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery?q=red", None).await), [sunset.as_str(), fox.as_str()]);
        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery?q=RED%20fo", None).await), [fox.as_str()]);
        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery?q=purple", None).await), Vec::<&str>::new());
        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery?user_id=u2", None).await), [whale.as_str()]);
        let whale_at = all["images"][1]["created_at"].as_i64().unwrap();
        let since = ok(&s, &alice, Method::GET, &format!("/gallery?from={whale_at}"), None).await;
        assert_eq!(ids(&since), [sunset.as_str(), whale.as_str()]);
        let before = ok(&s, &alice, Method::GET, &format!("/gallery?to={whale_at}"), None).await;
        assert_eq!(ids(&before), [fox.as_str()]);
        let between = ok(&s, &alice, Method::GET, &format!("/gallery?from={whale_at}&to={}&q=blue", whale_at + 1), None).await;
        assert_eq!(ids(&between), [whale.as_str()]);
        let bad = call(&s, &alice, Method::GET, &format!("/gallery?from={whale_at}&to={whale_at}"), None).await;
        assert_eq!(bad.error_param(422).as_deref(), Some("to"));
        assert_eq!(call(&s, &alice, Method::GET, "/gallery?from=yesterday", None).await.error_param(422).as_deref(), Some("from"));
        let page = ok(&s, &alice, Method::GET, "/gallery?limit=2", None).await;
        assert_eq!((ids(&page).len(), page["next_offset"].as_u64()), (2, Some(2)));
        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery?limit=2&offset=2", None).await), [fox.as_str()]);
    }

    async fn download_zip_share_delete_and_isolation(backend, store) {
        let dir = tempfile::tempdir().unwrap();
        let flags = store.flags(&["--auth-required", "true"]);
        let s = mock_state_on(backend, dir.path(), &flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let (_, alice) = account(&s, "alice").await;
        let (_, bob) = account(&s, "bob").await;
        let fox = make(&s, &alice, "a red fox", "u1").await;
        let owl = make(&s, &alice, "an owl", "u1").await;
        let png = call(&s, &alice, Method::GET, &format!("/images/{fox}.png"), None).await.body;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Where the picture is: the data folder, or the bucket alone.
        let in_folder = dir.path().join(format!("images/{fox}.png"));
        assert_eq!(in_folder.is_file(), store == common::Store::Folder, "{}", s.pictures.place());

        let download = call(&s, &alice, Method::GET, &format!("/gallery/{fox}/download"), None).await;
        assert_eq!(download.body, png);
        let seed = ok(&s, &alice, Method::GET, &format!("/gallery/{fox}"), None).await["parameters"]["seed"].as_u64().unwrap();
        let disposition = download.headers[header::CONTENT_DISPOSITION].to_str().unwrap().to_string();
        assert_eq!(disposition, format!("attachment; filename=\"duet-{seed}-{}.png\"", &fox[..8]));

        let zip = call(&s, &alice, Method::POST, "/gallery/zip", Some(json!({"ids": [fox, owl]}))).await;
        assert_eq!((zip.status.as_u16(), zip.headers[header::CONTENT_TYPE].to_str().unwrap()), (200, "application/zip"));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.body.clone())).unwrap();
        assert_eq!(archive.len(), 2);
        let mut first = Vec::new();
        archive.by_index(0).unwrap().read_to_end(&mut first).unwrap();
        assert_eq!(first, png, "the zip holds the very files");
        assert_eq!(call(&s, &alice, Method::POST, "/gallery/zip", Some(json!({"ids": []}))).await.error_param(422).as_deref(), Some("ids"));

        // A share link opens the picture for anyone, without credentials, until revoked.
        let share = call(&s, &alice, Method::POST, &format!("/gallery/{fox}/shares"), Some(json!({"expires_in_secs": 3600}))).await;
        assert_eq!(share.status, 201, "{}", String::from_utf8_lossy(&share.body));
        let share = share.json();
        let url = share["url"].as_str().unwrap().to_string();
        assert!(url.starts_with("/s/"), "{share}");
        let opened = call(&s, &Auth::None, Method::GET, &url, None).await;
        assert_eq!((opened.status.as_u16(), opened.body == png), (200, true));
        assert_eq!(opened.headers[header::CACHE_CONTROL], "public, max-age=60");
        let tampered = format!("{}x", &url[..url.len() - 1]);
        assert_eq!(call(&s, &Auth::None, Method::GET, &tampered, None).await.status, 404);
        let listed = ok(&s, &alice, Method::GET, &format!("/gallery/{fox}/shares"), None).await;
        assert_eq!(listed[0]["url"], url.as_str(), "the owner can copy the link again");
        let too_short = call(&s, &alice, Method::POST, &format!("/gallery/{fox}/shares"), Some(json!({"expires_in_secs": 5}))).await;
        assert_eq!(too_short.error_param(422).as_deref(), Some("expires_in_secs"));

        // Bob can reach none of it, and learns nothing about it.
        let share_id = share["id"].as_str().unwrap();
        for (method, uri, body) in [
            (Method::GET, format!("/gallery/{fox}"), None),
            (Method::DELETE, format!("/gallery/{fox}"), None),
            (Method::GET, format!("/gallery/{fox}/download"), None),
            (Method::GET, format!("/gallery/{fox}/shares"), None),
            (Method::POST, format!("/gallery/{fox}/shares"), Some(json!({}))),
            (Method::POST, "/gallery/zip".to_string(), Some(json!({"ids": [fox]}))),
            (Method::DELETE, format!("/shares/{share_id}"), None),
        ] {
            assert_eq!(call(&s, &bob, method.clone(), &uri, body).await.status, 404, "bob {method} {uri}");
        }
        assert_eq!(ids(&ok(&s, &bob, Method::GET, "/gallery", None).await), Vec::<&str>::new());

        assert_eq!(call(&s, &alice, Method::DELETE, &format!("/shares/{share_id}"), None).await.status, 204);
        assert_eq!(call(&s, &Auth::None, Method::GET, &url, None).await.status, 404, "revoked");

        // An expired link, even correctly signed, opens nothing.
        let past = server::storage::now_ms() - 1000;
        let expired = server::storage::ShareRow {
            id: "expired-share".into(),
            image_id: owl.clone(),
            account_id: ok(&s, &alice, Method::GET, "/auth/me", None).await["id"].as_str().unwrap().into(),
            created_at: past - 1000,
            expires_at: past,
            revoked_at: None,
        };
        s.db.insert_share(&expired).await.unwrap();
        let token = s.signing.sign(&format!("expired-share~{past}"));
        assert_eq!(call(&s, &Auth::None, Method::GET, &format!("/s/{token}"), None).await.status, 404, "expired");

        // Deleting removes the row, the file and every link.
        let live = ok(&s, &alice, Method::POST, &format!("/gallery/{owl}/shares"), Some(json!({}))).await;
        assert_eq!(call(&s, &alice, Method::DELETE, &format!("/gallery/{owl}"), None).await.status, 204);
        assert!(!s.pictures.exists(&format!("{owl}.png")).await.unwrap(), "the picture went with the row");
        assert_eq!(call(&s, &alice, Method::GET, &format!("/gallery/{owl}"), None).await.status, 404);
        assert_eq!(call(&s, &alice, Method::GET, &format!("/images/{owl}.png"), None).await.status, 404);
        assert_eq!(call(&s, &Auth::None, Method::GET, live["url"].as_str().unwrap(), None).await.status, 404);
        assert_eq!(ids(&ok(&s, &alice, Method::GET, "/gallery", None).await), [fox.as_str()]);
    }
}
