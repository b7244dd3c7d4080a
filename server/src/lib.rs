//! Duet's server: configuration, start-up, and the layers below the HTTP edge.

// The app's pages are deeply nested view types; rendering them needs more than the default 128.
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod edge;
pub mod hosts;
pub mod huge_pages;
pub mod inference;
pub mod jobs;
pub mod logging;
pub mod models;
pub mod routes;
pub mod service;

pub mod storage;
pub mod telemetry;

pub use routes::app;
pub use service::AppState;

use app::types::ModelRole;
use axum::serve::ListenerExt;
use config::Config;
use inference::{
    mock::{MockChat, MockImage},
    runtime::{self, RuntimeError},
};
use jobs::ImageJobs;
use leptos::prelude::LeptosOptions;
use models::{loader::Engines, ModelSlot};
use service::load::{ChatSlots, QueueBounds};
use std::sync::Arc;
use storage::{Database, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("could not start an engine thread: {0}")]
    Thread(std::io::Error),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Tool(String),
    #[error("server stopped: {0}")]
    Serve(std::io::Error),
}

/// Everything the server needs, built from the configuration: database (migrated), OpenVINO (unless
/// mocked) and the model engines, which finish loading in the background.
pub async fn build_state(config: Config) -> Result<AppState, StartupError> {
    // Before anything records: the engines' loading time is the first metric.
    let metrics = match config.server.metrics_addr {
        Some(_) => Some(telemetry::install().map_err(StartupError::Config)?),
        None => None,
    };
    // The runtime first: without it nothing can run, and the error says what to install.
    let models_here = config.cluster.local_chat() || config.cluster.local_images();
    let runtime = if config.models.use_mocks || !models_here {
        None
    } else {
        let runtime = runtime::load(&config.models.runtime_search())?;
        tracing::info!(version = %runtime.version, library = %runtime.library.display(), "OpenVINO loaded");
        Some(runtime)
    };
    private_folder(&config.storage.data_dir)?;
    let db = Database::connect(&config.storage.database_url()).await?;
    db.migrate().await?;
    if let config::DatabaseUrl::Sqlite(_) = config.storage.database_url() {
        private_database_files(&config.storage.data_dir);
    }
    auth::sessions::prepare(&db).await?;
    if !config.auth.required {
        tracing::warn!(
            "AUTH_REQUIRED=false: anyone who can reach this server acts as its owner; \
             keep it on your own machine, or set AUTH_REQUIRED=true"
        );
    }

    let leptos = LeptosOptions::builder()
        .output_name("duet")
        .site_root(config.server.site_root.to_string_lossy().as_ref())
        .site_pkg_dir("pkg")
        .site_addr(config.server.site_addr)
        .build();
    let bounds = QueueBounds {
        max_waiting: config.llm.chat_queue,
        max_wait: std::time::Duration::from_secs(config.llm.chat_queue_max_wait_s),
    };
    let chat_slots = Arc::new(ChatSlots::new(config.llm.chat_concurrency, bounds));
    let sd_model = config.models.sd_model.to_string();
    let (queue_size, lease_ms) = (config.images.queue_size, config.images.job_lease_ms);
    let process: Arc<str> = service::presence::process_name().into();
    let jobs = ImageJobs::new(queue_size, sd_model, config.models.use_mocks, db.clone(), lease_ms, &process);
    let pictures = storage::Pictures::open(&config.storage).map_err(StartupError::Config)?;
    tracing::info!(store = pictures.place(), "pictures kept here");
    // The image queue's worker starts whenever the image engine does (now, or after a download).
    let start_worker = {
        let (jobs, pictures) = (jobs.clone(), pictures.clone());
        let pause = chat_slots.image_pause(std::time::Duration::from_millis(config.images.yield_ms));
        move |engine| jobs.start(jobs::Worker { engine, pictures: pictures.clone(), pause: pause.clone() })
    };

    let remote = service::cluster::engines(&config, &db).map_err(StartupError::Config)?;
    let (llm, sd, engines) = if config.models.use_mocks {
        let llm = Arc::new(ModelSlot::mock(ModelRole::Llm, config.models.llm_model.clone()));
        let sd = Arc::new(ModelSlot::mock(ModelRole::Sd, config.models.sd_model.clone()));
        let image: Arc<dyn inference::engine::ImageEngine> = Arc::new(MockImage {
            model: config.models.sd_model.to_string(),
            step_time: std::time::Duration::from_millis(config.images.mock_step_ms),
        });
        let chat = MockChat { token_time: std::time::Duration::from_millis(config.llm.mock_token_ms) };
        let engines = Engines::default();
        if remote.chat.is_none() {
            engines.set_llm(Arc::new(chat));
        }
        if remote.image.is_none() {
            engines.set_sd(image.clone());
            start_worker(image);
        }
        (llm, sd, engines)
    } else {
        let local = (remote.chat.is_none(), remote.image.is_none());
        start_engines(&config, local, start_worker.clone())?
    };
    // Models answered elsewhere: their slots follow the workers or endpoints.
    let (llm, sd) = (
        match (&remote.chat, &remote.remote.chat) {
            (Some(chat), Some(pool)) => {
                engines.set_llm(chat.clone());
                service::cluster::slot(ModelRole::Llm, &config, pool)
            }
            _ => llm,
        },
        match (&remote.image, &remote.remote.images) {
            (Some(image), Some(pool)) => {
                engines.set_sd(image.clone());
                // Endpoints draw what this process claims; a web process claims nothing.
                if !config.cluster.image_endpoints.is_empty() {
                    start_worker(image.clone());
                }
                service::cluster::slot(ModelRole::Sd, &config, pool)
            }
            _ => sd,
        },
    );
    let signing = auth::signing::SigningKey::load(
        config.auth.secret_key.as_ref().map(|s| s.expose()),
        &config.storage.data_dir.join("secret.key"),
    )
    .map_err(StartupError::Config)?;
    let redis = match &config.storage.redis_url {
        Some(url) => Some(auth::sessions::connect_redis(url.expose()).await.map_err(StartupError::Config)?),
        None => None,
    };
    let limits = service::limits::Limits::new(config.limits, redis.clone()).for_process(process.clone());
    // What the last stop cut off: replies are marked so, pictures wait first in line again.
    if let Database::Sqlite(_) = db {
        // Every reply in flight was the last process's: marked under the ids they were to have,
        // then any turn still unanswered (from before replies in flight were recorded).
        service::chat::mark_orphan_replies(&db, i64::MAX, None)
            .await
            .map_err(|e| StartupError::Config(e.to_string()))?;
        service::chat::mark_interrupted(&db).await.map_err(|e| StartupError::Config(e.to_string()))?;
    }
    jobs.resume().await?;
    let role = config.cluster.role;
    let announce = service::presence::Announce {
        name: process.clone(),
        role: role.as_str(),
        url: (role == config::Role::Worker).then(|| config.cluster.announced_url(config.server.site_addr)),
    };
    service::presence::start(db.clone(), announce, std::time::Duration::from_millis(config.storage.heartbeat_ms));
    let images = &config.images;
    let prompts =
        service::sanitize::PromptPolicy::load(images.image_prompt_blocklist.as_deref(), &images.image_negative_prompt)
            .map_err(StartupError::Config)?;
    let prompts = Arc::new(prompts);
    let state = AppState {
        config: Arc::new(config),
        db,
        llm,
        sd,
        engines,
        jobs,
        process,
        remote: remote.remote,
        serving: Default::default(),
        pictures,
        redis,
        signing,
        limits,
        prompts,
        hashing: auth::password::Hashing::new(),
        zip_slots: Arc::new(tokio::sync::Semaphore::new(service::gallery::ZIP_CONCURRENCY)),
        chat_slots,
        runtime,
        metrics,
        leptos,
    };
    // Workers do not look: a web process stores their replies, fetched from them.
    if role != config::Role::Worker {
        service::presence::sweep(state.clone(), std::time::Duration::from_millis(state.config.storage.heartbeat_ms));
    }
    Ok(state)
}

/// Find the models, start an engine for each one whose files are there, and fetch the missing
/// ones in the background when `AUTO_DOWNLOAD_MODELS` is on.
fn start_engines(
    config: &Config,
    (chat_here, images_here): (bool, bool),
    start_worker: impl FnOnce(Arc<dyn inference::engine::ImageEngine>) + Send + 'static,
) -> Result<(Arc<ModelSlot>, Arc<ModelSlot>, Engines), StartupError> {
    let models_dir = config.models_dir();
    let locate = |role, spec: &config::ModelSpec, revision: &str| {
        Arc::new(ModelSlot::locate(role, spec.clone(), revision, &config.models.device, &models_dir))
    };
    let llm = locate(ModelRole::Llm, &config.models.llm_model, &config.models.llm_revision);
    let sd = locate(ModelRole::Sd, &config.models.sd_model, &config.models.sd_revision);
    for (slot, here) in [(&llm, chat_here), (&sd, images_here)] {
        if !here {
            continue;
        }
        let h = slot.health();
        if let Some(detail) = h.detail.as_deref() {
            tracing::warn!(role = ?h.role, model = %h.id, state = h.state.as_str(), "{detail}");
        }
    }
    let engines = Engines::default();
    let (llm_options, sd_options) = (config.llm_engine_options(), config.sd_compile_options());
    let (llm_settings, sd_settings) = service::health::engine_settings(config);
    tracing::info!(settings = %llm_settings, "chat model settings");
    tracing::info!(settings = %sd_settings, "image model settings");
    if !chat_here {
        // Answered elsewhere: the slot is replaced by one that follows the workers or endpoints.
    } else if config.models.auto_download_models && llm.to_download().is_some() {
        let engines = engines.clone();
        models::auto::spawn(llm.clone(), config.hub_options(), move |slot| engines.start_llm(slot, llm_options));
    } else {
        engines.start_llm(&llm, llm_options).map_err(StartupError::Thread)?;
    }
    if !images_here {
    } else if config.models.auto_download_models && sd.to_download().is_some() {
        let engines = engines.clone();
        models::auto::spawn(sd.clone(), config.hub_options(), move |slot| {
            engines.start_sd(slot, sd_options, start_worker)
        });
    } else {
        engines.start_sd(&sd, sd_options, start_worker).map_err(StartupError::Thread)?;
    }
    Ok((llm, sd, engines))
}

/// Run the command line.
pub async fn run(cli: cli::Cli) -> Result<(), StartupError> {
    let (config, settings) = (cli.config, cli.settings);
    logging::init(config.server.log_format, &config.server.log_filter).map_err(StartupError::Config)?;
    if let Some(reason) = huge_pages::restart_failure() {
        tracing::warn!(reason, "running without huge pages");
    }
    match cli.command.unwrap_or(cli::Command::Serve) {
        cli::Command::Serve => serve(config, &settings).await,
        // The tools block on engine threads: keep them off the async workers.
        cli::Command::Generate(args) => blocking(move || commands::generate::run(&config, args)).await,
        cli::Command::Imagine(args) => blocking(move || commands::imagine::run(&config, args)).await,
        cli::Command::Bench(command) => blocking(move || commands::bench::run(&config, command)).await,
        cli::Command::DownloadModels(args) => {
            commands::models::download(&config, args).await.map_err(StartupError::Tool)
        }
        cli::Command::VerifyModels(args) => blocking(move || commands::models::verify(&config, args)).await,
    }
}

async fn blocking(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), StartupError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StartupError::Config(e.to_string()))?.map_err(StartupError::Tool)
}

/// `DATA_DIR` holds live session ids, password hashes and everyone's pictures: only the server's
/// user may enter it (0700), made so or tightened, whatever the umask.
fn private_folder(dir: &std::path::Path) -> Result<(), StartupError> {
    let failed = |e: std::io::Error| StartupError::Config(format!("DATA_DIR {}: {e}", dir.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
        let mode = std::fs::metadata(dir).map_err(failed)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
            tracing::info!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "DATA_DIR made private (0700)");
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(failed)?;
    Ok(())
}

/// The SQLite database and its journal files are read and written by this user only (0600);
/// files made before the server set its umask are tightened too.
fn private_database_files(dir: &std::path::Path) {
    #[cfg(unix)]
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        use std::os::unix::fs::PermissionsExt;
        let name = entry.file_name();
        let is_db =
            name.to_str().is_some_and(|n| n.ends_with(".db") || n.ends_with(".db-wal") || n.ends_with(".db-shm"));
        if is_db && entry.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0) {
            if let Err(err) = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(file = %entry.path().display(), error = %err, "could not make a database file private");
            }
        }
    }
}

async fn serve(config: Config, settings: &[config::Setting]) -> Result<(), StartupError> {
    // Everything the server writes (database, its journal, pictures, caches) is its user's only.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting Duet");
    for config::Setting { variable, value } in settings {
        tracing::info!("config {variable}={value}");
    }
    if config.models.use_mocks {
        tracing::warn!("USE_MOCKS=true: answers come from mock engines, not the models");
    }
    let (addr, metrics_addr) = (config.server.site_addr, config.server.metrics_addr);
    let state = build_state(config).await?;
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })
    };
    let listener = bind(addr).await?;
    if let Some(metrics_addr) = metrics_addr {
        let metrics = bind(metrics_addr).await?;
        tracing::info!("metrics on http://{metrics_addr}/metrics");
        let router = api::metrics::listener_router(state.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(metrics, router).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
    }
    if state.config.cluster.role == config::Role::Worker {
        let url = state.config.cluster.announced_url(addr);
        tracing::info!("worker listening on http://{addr}, announced as {url}");
        let router = api::internal::worker_router(state);
        return axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(StartupError::Serve);
    }
    tracing::info!(role = state.config.cluster.role.as_str(), "listening on http://{addr}");
    serve_on(listener, state, shutdown_signal()).await.map_err(StartupError::Serve)
}

/// Serve the app on a bound listener until `shutdown` completes (tests serve on port 0 this way).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Streamed tokens are small writes: without TCP_NODELAY each one after the first waits for
    // the client's delayed ACK (measured: 40 ms to a mock reply's first token, 5 ms with it).
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    // The peer's address reaches the handlers (log-in and sign-up are limited per address).
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            sig.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
