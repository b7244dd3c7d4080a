//! This process's engines in other processes: the workers a web process routes chat turns to
//! (found through their heartbeats), and the OpenAI-compatible endpoints configured in place of
//! a local model; kept up to date, probed, and reported by `/health`.

use crate::{
    config::{Config, Role},
    inference::{
        diffusion::{ImageOutput, ImageRequest, PipelineError, SchedulerKind},
        engine::{BoxFuture, ChatEngine, ImageEngine, StepHooks},
        remote::{self, Node, OpenAiChat, OpenAiImage, Pool, Probe, WorkerChat},
        InferenceError,
    },
    models::ModelSlot,
    storage::Database,
};
use app::types::{EndpointHealth, ModelRole, ModelState};
use std::{sync::Arc, time::Duration};

/// How often workers and endpoints are probed, and the worker list read again.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The remote pools, for `/health`.
#[derive(Clone, Default)]
pub struct Remote {
    pub chat: Option<Pool>,
    pub images: Option<Pool>,
}

/// Engines this process uses from elsewhere, per its role and endpoints; `None` for a model
/// that runs here.
pub struct RemoteEngines {
    pub chat: Option<Arc<dyn ChatEngine>>,
    pub image: Option<Arc<dyn ImageEngine>>,
    pub remote: Remote,
}

pub fn engines(config: &Config, db: &Database) -> Result<RemoteEngines, String> {
    let cluster = &config.cluster;
    let secret = cluster.secret()?;
    if cluster.role != Role::All {
        // Progress reaches other processes by NOTIFY, and workers are found by their rows.
        if let Database::Sqlite(_) = db {
            return Err(format!(
                "ROLE={}: web processes and workers share a Postgres database (DATABASE_URL=postgres://…)",
                cluster.role.as_str()
            ));
        }
        if config.storage.image_store.as_ref().is_none_or(|s| matches!(s, crate::config::ImageStore::Folder(_))) {
            tracing::warn!(
                "ROLE={}: pictures are kept in a folder; every web process and worker must reach the same one \
                 (a shared disk), or use IMAGE_STORE=s3://…",
                cluster.role.as_str()
            );
        }
    }
    let key = cluster.endpoint_api_key.as_ref().map(|k| k.expose().to_string());
    let client = remote::client();
    // A web process's workers: read from the database, probed for their models being ready.
    let workers = (cluster.role == Role::Web).then(|| {
        let pool = Pool::new(Probe::Worker, secret.map(String::from));
        let every = Duration::from_millis(config.storage.heartbeat_ms);
        watch_workers(db.clone(), pool.clone(), every, client.clone());
        pool
    });
    let mut remote = Remote::default();
    let chat: Option<Arc<dyn ChatEngine>> = if !cluster.chat_endpoints.is_empty() {
        let pool = Pool::endpoints(&cluster.chat_endpoints, key.clone());
        pool.keep_probing(client.clone(), PROBE_EVERY);
        let model = cluster.chat_endpoint_model.clone().unwrap_or_else(|| config.models.llm_model.to_string());
        remote.chat = Some(pool.clone());
        Some(Arc::new(OpenAiChat::new(pool, &model)))
    } else if let Some(pool) = &workers {
        remote.chat = Some(pool.clone());
        Some(Arc::new(WorkerChat::new(pool.clone(), secret.unwrap_or_default())))
    } else {
        None
    };
    let image: Option<Arc<dyn ImageEngine>> = if !cluster.image_endpoints.is_empty() {
        let pool = Pool::endpoints(&cluster.image_endpoints, key);
        pool.keep_probing(client, PROBE_EVERY);
        let model = cluster.image_endpoint_model.clone().unwrap_or_else(|| config.models.sd_model.to_string());
        remote.images = Some(pool.clone());
        Some(Arc::new(OpenAiImage::new(pool, &model, SchedulerKind::Pndm)))
    } else if let Some(pool) = &workers {
        remote.images = Some(pool.clone());
        Some(Arc::new(DrawnByWorkers))
    } else {
        None
    };
    Ok(RemoteEngines { chat, image, remote })
}

/// A slot for a model answered from elsewhere: ready while one of `pool`'s nodes is up.
pub fn slot(role: ModelRole, config: &Config, pool: &Pool) -> Arc<ModelSlot> {
    let spec = match role {
        ModelRole::Llm => config.models.llm_model.clone(),
        ModelRole::Sd => config.models.sd_model.clone(),
    };
    let device = match pool.probe {
        Probe::Worker => crate::models::DEVICE_WORKERS,
        Probe::OpenAi => crate::models::DEVICE_ENDPOINT,
    };
    let slot = Arc::new(ModelSlot::elsewhere(role, spec, device));
    let (watched, pool) = (slot.clone(), pool.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let up = pool.any_up();
            match (up, watched.state() == ModelState::Ready) {
                (true, false) => watched.set_ready(),
                (false, true) | (false, false) => watched.set_error(match pool.probe {
                    Probe::Worker if pool.is_empty() => "no worker is running: start one with ROLE=worker".into(),
                    Probe::Worker => "no worker is ready (their models are loading, or they are unreachable)".into(),
                    Probe::OpenAi => "no endpoint is reachable; see `endpoints`".into(),
                }),
                (true, true) => {}
            }
        }
    });
    slot
}

/// Keep `pool` holding the workers whose heartbeats are recent, and probe them.
fn watch_workers(db: Database, pool: Pool, heartbeat: Duration, client: reqwest::Client) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY.min(heartbeat));
        loop {
            tick.tick().await;
            match db.live_workers(super::presence::alive_since(heartbeat)).await {
                Ok(rows) => {
                    let nodes = rows.into_iter().map(|(name, url)| Node { name, url }).collect();
                    pool.set_nodes(nodes);
                    pool.probe_all(&client).await;
                }
                Err(err) => tracing::warn!(error = %err, "could not read the workers alive"),
            }
        }
    });
}

/// `/health`'s view of the remote engines; URLs and reasons only for `admin`.
pub fn health(remote: &Remote, admin: bool) -> Vec<EndpointHealth> {
    let pools = [(ModelRole::Llm, &remote.chat), (ModelRole::Sd, &remote.images)];
    let mut out = Vec::new();
    for (role, pool) in pools {
        let Some(pool) = pool else { continue };
        let kind = match pool.probe {
            Probe::Worker => "worker",
            Probe::OpenAi => "openai",
        };
        for member in pool.members() {
            out.push(EndpointHealth {
                role,
                kind: kind.into(),
                url: admin.then(|| member.node.url.clone()),
                state: if member.up { "ok" } else { "error" }.into(),
                detail: if admin { member.detail } else { member.detail.map(|_| "unreachable or not ready".into()) },
            });
        }
    }
    out
}

/// A web process's image engine: the job table is its queue and workers draw; it never draws.
struct DrawnByWorkers;

impl ImageEngine for DrawnByWorkers {
    fn default_scheduler(&self) -> SchedulerKind {
        // Stable Diffusion 1.5's own (its scheduler_config.json), which the workers' model names.
        SchedulerKind::Pndm
    }

    fn generate(&self, _: ImageRequest, _: StepHooks) -> BoxFuture<'_, Result<ImageOutput, PipelineError>> {
        Box::pin(async {
            Err(PipelineError::Engine(InferenceError::Generation("web processes draw no pictures".into())))
        })
    }
}
