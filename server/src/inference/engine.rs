//! One OS thread per engine owns its OpenVINO objects (they are `Send` but not `Sync` and need
//! `&mut`); async callers send it closures and await the answer. The service sees engines through
//! the `ChatEngine` and `ImageEngine` traits, so mock engines can stand in for the real ones.

use super::{
    diffusion::{ImageOutput, ImageRequest, PipelineError, Progress, SchedulerKind},
    llm::{GenerateRequest, GenerationHandle},
    InferenceError,
};
use std::sync::{atomic::AtomicBool, Arc};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

pub use futures::future::BoxFuture;

/// Text generation: streams of reasoning and answer pieces, cancelled when the handle drops.
pub trait ChatEngine: Send + Sync + 'static {
    fn generate(&self, request: GenerateRequest) -> Result<GenerationHandle, InferenceError>;

    /// The same for a chat turn whose reply will be stored as `reply_id`: an engine in another
    /// process finishes it even when this process goes away, and keeps it for `recover`.
    fn generate_reply(&self, request: GenerateRequest, _reply_id: &str) -> Result<GenerationHandle, InferenceError> {
        self.generate(request)
    }

    /// A reply finished elsewhere after the process that asked for it went away (`key`: its
    /// conversation). In-process engines have none: their replies died with their process.
    fn recover<'a>(&'a self, _key: &'a str, _reply_id: &'a str) -> BoxFuture<'a, Option<super::llm::Completion>> {
        Box::pin(async { None })
    }
}

/// Image generation, one image at a time.
pub trait ImageEngine: Send + Sync + 'static {
    /// The scheduler used when a request names none.
    fn default_scheduler(&self) -> SchedulerKind;
    fn generate(&self, request: ImageRequest, hooks: StepHooks) -> BoxFuture<'_, Result<ImageOutput, PipelineError>>;
}

/// Runs between image steps on the engine thread and may block there, to hand the CPU to other
/// work; it gets the job's cancel flag so it can stop waiting for a cancelled job.
pub type Pause = Arc<dyn Fn(&AtomicBool) + Send + Sync>;

/// How an image job talks to its caller while it runs.
pub struct StepHooks {
    /// Gets every finished step.
    pub progress: Option<UnboundedSender<Progress>>,
    /// Set it to stop before the next step.
    pub cancel: Arc<AtomicBool>,
    pub pause: Option<Pause>,
}

type Job<M> = Box<dyn FnOnce(&mut M) + Send>;

pub struct EngineHost<M> {
    jobs: std::sync::mpsc::Sender<Job<M>>,
}

impl<M> Clone for EngineHost<M> {
    fn clone(&self) -> Self {
        EngineHost { jobs: self.jobs.clone() }
    }
}

impl<M: 'static> EngineHost<M> {
    /// Start a thread named `name` that builds its model with `load` and then runs jobs in order.
    /// `loaded` hears how loading went; when it fails the thread ends and jobs get `EngineGone`.
    pub fn spawn<L, F>(name: &str, load: L, loaded: F) -> std::io::Result<Self>
    where
        L: FnOnce() -> Result<M, InferenceError> + Send + 'static,
        F: FnOnce(Result<(), InferenceError>) + Send + 'static,
    {
        let (jobs, queue) = std::sync::mpsc::channel::<Job<M>>();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let mut model = match load() {
                Ok(model) => {
                    loaded(Ok(()));
                    model
                }
                Err(err) => return loaded(Err(err)),
            };
            while let Ok(job) = queue.recv() {
                job(&mut model);
            }
        })?;
        Ok(EngineHost { jobs })
    }

    /// Run `f` on the engine thread and wait for its result without blocking the async runtime.
    pub async fn run<R, F>(&self, f: F) -> Result<R, InferenceError>
    where
        R: Send + 'static,
        F: FnOnce(&mut M) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job<M> = Box::new(move |model| {
            let _ = tx.send(f(model));
        });
        self.jobs.send(job).map_err(|_| InferenceError::EngineGone)?;
        rx.await.map_err(|_| InferenceError::EngineGone)
    }
}

/// Run `f`, turning a panic into an error that says what panicked: a bug in one request must not
/// take an engine thread, and every other request, down with it.
pub(crate) fn catch_panic<T, E: From<InferenceError>>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("unknown");
        Err(InferenceError::Generation(format!("{what} panic: {text}")).into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_on_the_engine_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let host =
            EngineHost::spawn("test-engine", || Ok(Vec::<u32>::new()), move |r| tx.send(r.is_ok()).unwrap()).unwrap();
        assert!(rx.recv().unwrap());
        host.run(|v| v.push(1)).await.unwrap();
        let name = host.run(|_| std::thread::current().name().map(String::from)).await.unwrap();
        assert_eq!(name.as_deref(), Some("test-engine"));
        assert_eq!(
            host.run(|v| {
                v.push(2);
                v.clone()
            })
            .await
            .unwrap(),
            vec![1, 2]
        );
    }

    #[tokio::test]
    async fn a_failed_load_reports_and_refuses_jobs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let host = EngineHost::<()>::spawn(
            "failing-engine",
            || Err(InferenceError::BadModel("broken".into())),
            move |r| tx.send(r.unwrap_err().to_string()).unwrap(),
        )
        .unwrap();
        assert_eq!(rx.recv().unwrap(), "broken");
        assert!(matches!(host.run(|_| ()).await, Err(InferenceError::EngineGone)));
    }
}
