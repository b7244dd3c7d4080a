use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber; `filter` uses `RUST_LOG` syntax. Safe to call twice (tests).
/// Logs go to stderr, so the tools' results on stdout stay machine-readable.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("RUST_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}
