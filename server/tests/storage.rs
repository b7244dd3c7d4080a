//! Migrations and basic queries on both databases: a SQLite file and a throwaway Postgres cluster.

mod common;

use server::{config::DatabaseUrl, storage::Database};
use sqlx::Row;

const TABLES: [&str; 3] = ["conversations", "messages", "images"];

async fn table_names(db: &Database) -> Vec<String> {
    let rows = match db {
        Database::Sqlite(pool) => sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>(),
        Database::Postgres(pool) => sqlx::query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect(),
    };
    rows
}

/// Insert a conversation with two messages through the same SQL on either backend, read them
/// back, and check that deleting the conversation removes its messages (foreign key cascade).
async fn round_trip(db: &Database) {
    const CONV: &str =
        "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)";
    const MSG: &str = "INSERT INTO messages (id, conversation_id, seq, role, content, reasoning, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    const READ: &str = "SELECT role, content, reasoning FROM messages WHERE conversation_id = $1 ORDER BY seq";
    const COUNT: &str = "SELECT COUNT(*) FROM messages";
    macro_rules! exercise {
        ($pool:expr) => {{
            let pool = $pool;
            sqlx::query(CONV)
                .bind("c1")
                .bind("alice")
                .bind("Fox pictures")
                .bind(1_700_000_000_000i64)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(MSG)
                .bind("m1")
                .bind("c1")
                .bind(0i32)
                .bind("user")
                .bind("Draw a fox")
                .bind(None::<String>)
                .bind(1i64)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(MSG)
                .bind("m2")
                .bind("c1")
                .bind(1i32)
                .bind("assistant")
                .bind("Here is a fox. 🦊")
                .bind(Some("They want a fox."))
                .bind(2i64)
                .execute(pool)
                .await
                .unwrap();
            let rows = sqlx::query(READ).bind("c1").fetch_all(pool).await.unwrap();
            let got: Vec<(String, String, Option<String>)> =
                rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
            assert_eq!(
                got,
                vec![
                    ("user".into(), "Draw a fox".into(), None),
                    ("assistant".into(), "Here is a fox. 🦊".into(), Some("They want a fox.".into())),
                ]
            );
            // A role outside the allowed set is refused by the schema.
            assert!(sqlx::query(MSG)
                .bind("m3")
                .bind("c1")
                .bind(2i32)
                .bind("robot")
                .bind("x")
                .bind(None::<String>)
                .bind(3i64)
                .execute(pool)
                .await
                .is_err());
            // Two messages cannot share a position in one conversation.
            assert!(sqlx::query(MSG)
                .bind("m4")
                .bind("c1")
                .bind(1i32)
                .bind("user")
                .bind("x")
                .bind(None::<String>)
                .bind(3i64)
                .execute(pool)
                .await
                .is_err());
            sqlx::query("DELETE FROM conversations WHERE id = $1").bind("c1").execute(pool).await.unwrap();
            let left: i64 = sqlx::query(COUNT).fetch_one(pool).await.unwrap().get(0);
            assert_eq!(left, 0, "messages must go with their conversation");
        }};
    }
    match db {
        Database::Sqlite(pool) => exercise!(pool),
        Database::Postgres(pool) => exercise!(pool),
    }
}

async fn check_backend(db: Database) {
    db.migrate().await.expect("migrations apply");
    db.migrate().await.expect("migrations are idempotent");
    db.ping().await.unwrap();
    let tables = table_names(&db).await;
    for table in TABLES {
        assert!(tables.iter().any(|t| t == table), "{table} missing from {tables:?}");
    }
    round_trip(&db).await;
    service_queries(&db).await;
}

/// The queries the service layer uses, on either backend.
async fn service_queries(db: &Database) {
    use server::storage::{ImageRow, NewMessage};
    db.create_conversation("c2", "acct", "alice", "Boats").await.unwrap();
    for (id, role, content, prompt) in
        [("a", "user", "draw a boat", None), ("b", "assistant", "Here.", Some("a boat")), ("c", "user", "thanks", None)]
    {
        let m = NewMessage { id, conversation_id: "c2", role, content, image_prompt: prompt, ..Default::default() };
        db.append_message(&m).await.unwrap();
    }
    let full = NewMessage {
        id: "d",
        conversation_id: "c2",
        role: "assistant",
        content: "You're welcome.",
        reasoning: Some("Polite."),
        model: Some("m"),
        prompt_tokens: Some(40),
        completion_tokens: Some(5),
        ttft_ms: Some(12),
        total_ms: Some(30),
        finish_reason: Some("eos"),
        ..Default::default()
    };
    db.append_message(&full).await.unwrap();
    let recent = db.recent_messages("c2", 3).await.unwrap();
    let got: Vec<(i32, &str, Option<&str>)> =
        recent.iter().map(|m| (m.seq, m.content.as_str(), m.image_prompt.as_deref())).collect();
    assert_eq!(got, [(1, "Here.", Some("a boat")), (2, "thanks", None), (3, "You're welcome.", None)]);
    assert_eq!(recent[2].reasoning.as_deref(), Some("Polite."));
    let conv = db.conversation("acct", "c2").await.unwrap().unwrap();
    assert_eq!((conv.account_id.as_str(), conv.user_id.as_str(), conv.title.as_str()), ("acct", "alice", "Boats"));
    assert!(conv.updated_at >= conv.created_at);
    assert!(db.conversation("acct", "nope").await.unwrap().is_none());
    assert!(db.conversation("other", "c2").await.unwrap().is_none(), "another account's is not found");

    let row = ImageRow {
        id: "i1".into(),
        account_id: "acct".into(),
        user_id: "alice".into(),
        conversation_id: Some("c2".into()),
        message_id: Some("b".into()),
        prompt: "a boat".into(),
        negative_prompt: String::new(),
        steps: 20,
        guidance_scale: 7.5,
        seed: u32::MAX as i64,
        width: 512,
        height: 768,
        scheduler: "pndm".into(),
        model: "m".into(),
        file_name: "i1.png".into(),
        created_at: 5,
    };
    db.insert_image(&row).await.unwrap();
    assert_eq!(db.image("acct", "i1").await.unwrap(), Some(row));
    assert_eq!(db.image("other", "i1").await.unwrap(), None);
    assert_eq!(db.image("acct", "i2").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_migrates_in_wal_mode_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    // The folder does not exist yet: connecting creates it and the file.
    let url = DatabaseUrl::Sqlite(format!("sqlite://{}/nested/duet.db", dir.path().display()));
    let db = Database::connect(&url).await.unwrap();
    assert_eq!(db.backend(), "sqlite");
    let Database::Sqlite(pool) = &db else { unreachable!() };
    let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(pool).await.unwrap().get(0);
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query("PRAGMA foreign_keys").fetch_one(pool).await.unwrap().get(0);
    assert_eq!(fk, 1);
    check_backend(db).await;
    assert!(dir.path().join("nested/duet.db").is_file());
}

#[tokio::test]
async fn postgres_migrates_and_round_trips() {
    let pg = common::postgres::TempPostgres::start();
    let db = Database::connect(&DatabaseUrl::Postgres(pg.url())).await.unwrap();
    assert_eq!(db.backend(), "postgres");
    check_backend(db).await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error_with_the_password_masked() {
    let url = DatabaseUrl::Postgres("postgres://duet:s3cret@127.0.0.1:1/duet".into());
    let err = Database::connect(&url).await.unwrap_err().to_string();
    assert!(err.starts_with("database postgres://duet:***@127.0.0.1:1/duet"), "{err}");
    assert!(!err.contains("s3cret"));
}

/// Many turns stored at once on SQLite (more writers than pool connections, the pool still
/// growing) all succeed: a message's transaction takes the write lock up front and waits for
/// it, where a deferred one could fail at once with "database is locked" (a mock-mode load of
/// 64 sessions gave a few 500s that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_many_messages_written_at_once() {
    use server::storage::NewMessage;
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite(format!("sqlite://{}/duet.db", dir.path().display()));
    let db = Database::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    for round in 0..5 {
        let writers = (0..64).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let conversation = format!("c{round}-{i}");
                db.create_conversation(&conversation, "acct", "u", "t").await?;
                for seq in 0..3 {
                    let id = format!("{conversation}-{seq}");
                    let message = NewMessage {
                        id: &id,
                        conversation_id: &conversation,
                        role: "user",
                        content: "hi",
                        ..Default::default()
                    };
                    db.append_message(&message).await?;
                }
                Ok::<_, server::storage::StorageError>(())
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.unwrap().expect("every message is stored");
        }
    }
}
