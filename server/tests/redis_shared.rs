//! With REDIS_URL, two server processes (two states over the same data) share sessions and
//! rate-limit buckets through a redis-server the test starts; on SQLite and on Postgres.

mod common;

use axum::http::Method;
use common::api::{account, call, mock_state_on};
use server::storage::Database;

async fn session_rows(db: &Database) -> i64 {
    match db {
        Database::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions").fetch_one(pool).await.unwrap()
        }
        Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions.session").fetch_one(pool).await.unwrap()
        }
    }
}

on_both_databases! {
    async fn two_servers_share_sessions_and_rate_limits_through_redis(backend) {
        let redis = common::redis::TempRedis::start();
        let url = redis.url();
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--auth-required", "true", "--redis-url", url.as_str(), "--account-requests-per-minute", "4"];
        let a = mock_state_on(backend, dir.path(), &flags).await;
        let b = mock_state_on(backend, dir.path(), &flags).await;

        // Registered (and logged in) on A, the session works on B; it is in Redis, not the database.
        let (cookie, key) = account(&a, "alice").await; // 1 request on the bucket: creating the key
        let me = call(&b, &cookie, Method::GET, "/auth/me", None).await;
        assert_eq!(me.status, 200, "{}", String::from_utf8_lossy(&me.body));
        assert_eq!(session_rows(&a.db).await, 0, "sessions live in Redis");

        // One bucket for both servers: 4 a minute in all, not 4 each.
        assert_eq!(call(&a, &key, Method::GET, "/auth/me", None).await.status, 200); // 3
        assert_eq!(call(&b, &key, Method::GET, "/auth/me", None).await.status, 200); // 4
        let over = call(&a, &key, Method::GET, "/auth/me", None).await;
        assert_eq!(over.status, 429, "{}", String::from_utf8_lossy(&over.body));
        assert_eq!(over.json()["error"]["param"], "account.requests_per_minute");
        assert_eq!(call(&b, &key, Method::GET, "/auth/me", None).await.status, 429);

        // Logging out on B ends the session on A too.
        let (bob, _) = account(&a, "bob").await;
        assert_eq!(call(&b, &bob, Method::GET, "/auth/me", None).await.status, 200);
        assert_eq!(call(&b, &bob, Method::POST, "/auth/logout", None).await.status, 204);
        assert_eq!(call(&a, &bob, Method::GET, "/auth/me", None).await.status, 401);
    }
}
