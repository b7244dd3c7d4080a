//! `AUTO_DOWNLOAD_MODELS=true`: a missing model is fetched in the background while the server
//! already answers; `/health` shows it `downloading` with its progress, then `loading`.

use super::{
    hub::{self, HubOptions},
    progress::Tracker,
    ModelSlot,
};
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
        let tracker = Tracker::new(move |progress| view.set_downloading(progress.clone()));
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
