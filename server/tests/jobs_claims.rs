//! The shared image queue's rows on both databases: admission counted and inserted in one step,
//! claims in order and never twice (many claimers at once), leases renewed by their holder only
//! and taken over once past, cancels of queued and drawing jobs, and a SQLite restart's requeue.

mod common;

use server::storage::{Database, JobCounts, JobRow};

async fn database(backend: common::Backend, dir: &std::path::Path) -> Database {
    let config = common::config_on(backend, dir, &[]).await;
    let db = Database::connect(&config.storage.database_url()).await.unwrap();
    db.migrate().await.unwrap();
    db
}

fn row(id: &str, account: &str, created_at: i64) -> JobRow {
    JobRow {
        id: id.into(),
        account_id: account.into(),
        user_id: String::new(),
        conversation_id: None,
        message_id: None,
        prompt: "a boat".into(),
        negative_prompt: String::new(),
        steps: 10,
        guidance_scale: 7.5,
        seed: 1,
        width: 256,
        height: 256,
        scheduler: "ddim".into(),
        model: "m".into(),
        status: "queued".into(),
        step: 0,
        error: None,
        nsfw: None,
        attempts: 0,
        created_at,
        started_at: None,
        finished_at: None,
        worker: None,
        lease_until: None,
        cancel_requested: 0,
    }
}

/// Enqueue with a bound of `capacity` queued jobs and at most `per_account` of an account's.
async fn enqueue(db: &Database, row: &JobRow, capacity: i64, per_account: i64) -> Result<(), String> {
    db.enqueue_job(row, &row.account_id, "", |c: JobCounts| {
        if c.account >= per_account {
            return Err(format!("account has {}", c.account));
        }
        if c.queued >= capacity {
            return Err(format!("queue has {}", c.queued));
        }
        Ok(())
    })
    .await
    .unwrap()
}

on_both_databases! {
    async fn jobs_are_admitted_claimed_renewed_taken_over_and_cancelled_through_their_rows(backend) {
        let dir = tempfile::tempdir().unwrap();
        let db = database(backend, dir.path()).await;
        enqueue(&db, &row("j1", "acc", 1), 2, 10).await.unwrap();
        enqueue(&db, &row("j2", "acc", 2), 2, 10).await.unwrap();
        assert_eq!(enqueue(&db, &row("j3", "acc", 3), 2, 10).await, Err("queue has 2".into()));
        assert_eq!(enqueue(&db, &row("j3", "acc", 3), 5, 2).await, Err("account has 2".into()));
        assert_eq!(db.unfinished_job_counts("acc", "").await.unwrap(), JobCounts { queued: 2, account: 2, of_user: 2 });
        assert_eq!(db.unfinished_job_counts("else", "").await.unwrap(), JobCounts { queued: 2, account: 0, of_user: 0 });

        // Oldest first; the claim names its holder and its lease.
        let now = 1_000_000;
        let first = db.claim_job("w1", now, now + 100).await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.status.as_str(), first.worker.as_deref(), first.attempts), ("j1", "running", Some("w1"), 1));
        let second = db.claim_job("w2", now, now + 100).await.unwrap().unwrap();
        assert_eq!(second.id, "j2");
        assert_eq!(db.claim_job("w3", now, now + 100).await.unwrap(), None, "nothing left to claim");

        // Only the holder renews; a cancel asked for reaches it at its next renewal.
        assert_eq!(db.renew_job("j1", "w1", 3, now + 200).await.unwrap(), Some(false));
        assert_eq!(db.renew_job("j1", "w2", 4, now + 200).await.unwrap(), None, "not w2's");
        let (asked, changed) = db.cancel_job("acc", "j1", now).await.unwrap().unwrap();
        assert!(changed);
        assert_eq!((asked.status.as_str(), asked.cancel_requested), ("running", 1), "it stops between steps");
        assert_eq!(db.renew_job("j1", "w1", 4, now + 200).await.unwrap(), Some(true));
        assert!(db.end_job("j1", "w1", "cancelled", 4, None, None, now + 50).await.unwrap());
        assert!(db.cancel_job("other", "j1", now).await.unwrap().is_none(), "someone else's");
        let (ended, changed) = db.cancel_job("acc", "j1", now).await.unwrap().unwrap();
        assert!(!changed);
        assert_eq!(ended.status, "cancelled");

        // w2 went quiet: once its lease is past, w3 takes the job over, drawn from the start.
        assert_eq!(db.claim_job("w3", now + 99, now + 300).await.unwrap(), None, "lease still holds");
        let taken = db.claim_job("w3", now + 101, now + 300).await.unwrap().unwrap();
        assert_eq!((taken.id.as_str(), taken.worker.as_deref(), taken.attempts, taken.step), ("j2", Some("w3"), 2, 0));
        assert_eq!(db.renew_job("j2", "w2", 5, now + 400).await.unwrap(), None, "w2 lost it");
        assert!(!db.end_job("j2", "w2", "done", 10, None, Some(false), now + 150).await.unwrap());
        assert!(db.end_job("j2", "w3", "done", 10, None, Some(false), now + 150).await.unwrap());
        let done = db.job("acc", "j2").await.unwrap().unwrap();
        assert_eq!((done.status.as_str(), done.nsfw, done.lease_until), ("done", Some(0), None));

        // A queued job cancelled ends at once and is never claimed.
        enqueue(&db, &row("j4", "acc", 4), 5, 10).await.unwrap();
        let (cancelled, _) = db.cancel_job("acc", "j4", now).await.unwrap().unwrap();
        assert_eq!(cancelled.status, "cancelled");
        assert_eq!(db.claim_job("w1", now + 500, now + 600).await.unwrap(), None);

        // A job cancelled while its process was gone ends instead of being drawn again.
        enqueue(&db, &row("j5", "acc", 5), 5, 10).await.unwrap();
        db.claim_job("w1", now + 500, now + 600).await.unwrap().unwrap();
        db.cancel_job("acc", "j5", now + 550).await.unwrap();
        assert_eq!(db.claim_job("w2", now + 700, now + 800).await.unwrap(), None);
        assert_eq!(db.job("acc", "j5").await.unwrap().unwrap().status, "cancelled");

        // A restart (SQLite: one process owns the file) queues again what was drawing.
        enqueue(&db, &row("j6", "acc", 6), 5, 10).await.unwrap();
        db.claim_job("w1", now + 900, now + 100_000).await.unwrap().unwrap();
        assert_eq!(db.requeue_running_jobs(now + 901).await.unwrap(), 1);
        let again = db.claim_job("w9", now + 902, now + 1000).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), ("j6", 2));
    }

    async fn many_claimers_at_once_never_take_the_same_job(backend) {
        let dir = tempfile::tempdir().unwrap();
        let db = database(backend, dir.path()).await;
        for i in 0..20 {
            enqueue(&db, &row(&format!("j{i:02}"), "acc", i), 100, 100).await.unwrap();
        }
        let claims = (0..30).map(|w| {
            let db = db.clone();
            tokio::spawn(async move { db.claim_job(&format!("w{w}"), 5_000, 9_000).await.unwrap() })
        });
        let mut claimed: Vec<String> = Vec::new();
        for claim in futures::future::join_all(claims).await {
            if let Some(row) = claim.unwrap() {
                claimed.push(row.id);
            }
        }
        claimed.sort();
        let expected: Vec<String> = (0..20).map(|i| format!("j{i:02}")).collect();
        assert_eq!(claimed, expected, "each job claimed exactly once");
    }

    async fn admissions_at_once_never_pass_the_bound_together(backend) {
        let dir = tempfile::tempdir().unwrap();
        let db = database(backend, dir.path()).await;
        let tries = (0..12).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { enqueue(&db, &row(&format!("a{i}"), "acc", i), 100, 3).await })
        });
        let admitted = futures::future::join_all(tries).await.into_iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
        assert_eq!(admitted, 3);
    }
}
