//! `AUTO_DOWNLOAD_MODELS=true`: a missing model is fetched in the background while the server
//! already answers; `/health` shows it `downloading` with its progress, then `loading`.

use super::{
    hub::{self, HubOptions},
    progress::Tracker,
    ModelSlot,
};
use crate::telemetry::catalogue::{MODEL_DOWNLOAD_BYTES, MODEL_DOWNLOAD_FAILURES};
use std::sync::Arc;

/// Fetch the slot's repository, then hand the slot to `load` (which starts its engine).
pub fn spawn(
    slot: Arc<ModelSlot>,
    options: HubOptions,
    load: impl FnOnce(&Arc<ModelSlot>) -> std::io::Result<()> + Send + 'static,
) {
    let Some(repo) = slot.to_download().map(str::to_string) else { return };
    slot.set_downloading(Default::default());
    tokio::spawn(async move {
        let view = slot.clone();
        // The metric counts what arrives: the rise in bytes done since the last view.
        let counted = std::sync::atomic::AtomicU64::new(0);
        let tracker = Tracker::new(move |progress| {
            let before = counted.fetch_max(progress.bytes_done, std::sync::atomic::Ordering::Relaxed);
            let bytes = metrics::counter!(MODEL_DOWNLOAD_BYTES, "role" => view.role.as_str());
            bytes.increment(progress.bytes_done.saturating_sub(before));
            view.set_downloading(progress.clone())
        });
        tracing::info!(role = ?slot.role, repo = %repo, revision = %slot.revision, "downloading model in the background");
        let ticker = {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    every.tick().await;
                    tracker.tick();
                }
            })
        };
        let outcome = hub::fetch(&options, slot.role, &repo, &slot.revision, &tracker).await;
        ticker.abort();
        tracker.close();
        match outcome {
            Ok(fetched) => {
                slot.set_found(fetched.dir);
                if let Err(err) = load(&slot) {
                    slot.set_error(format!("could not start the engine thread: {err}"));
                }
            }
            Err(err) => {
                tracing::error!(role = ?slot.role, repo = %repo, error = %err, "model download failed");
                metrics::counter!(MODEL_DOWNLOAD_FAILURES, "role" => slot.role.as_str()).increment(1);
                let next = if err.transient() {
                    "the next start resumes it, or run `server download-models`"
                } else {
                    "fix that and restart, or run `server download-models`"
                };
                slot.set_error(format!("download failed: {err}; {next}"));
            }
        }
    });
}
