//! Prometheus metrics. Code anywhere records through the `metrics` crate's macros with the names
//! in [`catalogue`]; until [`install`] runs (only when `METRICS_ADDR` is set) every record is a
//! no-op. The exporter renders the text format for `GET /metrics` (see `api::metrics`), after
//! the service has set the gauges that are read from state at scrape time.

pub mod catalogue;
pub mod chat;

use catalogue::{Kind, METRICS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{sync::OnceLock, time::Duration};

/// Histogram samples are buffered until drained; without scrapes they are drained this often,
/// so memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The installed recorder, to render what it holds.
#[derive(Clone, Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// The text exposition format, every metric with its HELP and TYPE lines.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Install the process's recorder (once; later calls get the same one), with each histogram's
/// buckets and each metric's description from the catalogue.
pub fn install() -> Result<Exporter, String> {
    static INSTALLED: OnceLock<Result<Exporter, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for m in METRICS.iter().filter(|m| m.kind == Kind::Histogram) {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(m.name.to_string()), m.buckets)
                    .map_err(|e| format!("metric {}: {e}", m.name))?;
            }
            let handle =
                builder.install_recorder().map_err(|e| format!("could not install the metrics recorder: {e}"))?;
            for m in METRICS {
                match m.kind {
                    Kind::Counter => metrics::describe_counter!(m.name, m.help),
                    Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
                    Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
                }
            }
            metrics::gauge!(catalogue::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            zero_counters();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .map_err(|e| format!("could not start the metrics upkeep thread: {e}"))?;
            Ok(Exporter { handle })
        })
        .clone()
}

/// Counters with a fixed set of labels start at 0, so a rate over them is defined from the first
/// scrape and an alert on `increase(...) > 0` sees the first event.
fn zero_counters() {
    use catalogue::*;
    let fixed: [(&'static str, &'static str, &[&'static str]); 5] = [
        (CHAT_REPLIES, "finish_reason", &chat::FINISH_REASONS),
        (CHAT_PROMPT_TOKENS, "source", &["cache", "computed"]),
        (CHAT_EVICTED, "reason", &["room", "limit"]),
        (IMAGE_JOBS, "state", &["done", "failed", "cancelled", "rejected"]),
        (LOGIN_FAILURES, "reason", &["credentials", "disabled"]),
    ];
    for (name, label, values) in fixed {
        for &value in values {
            metrics::counter!(name, label => value).absolute(0);
        }
    }
    for name in [CHAT_GENERATED_TOKENS, IMAGE_NSFW, DB_ERRORS] {
        metrics::counter!(name).absolute(0);
    }
}

/// A gauge raised by one while this lives (requests in flight, say).
pub struct Raised(metrics::Gauge);

impl Raised {
    pub fn new(gauge: metrics::Gauge) -> Raised {
        gauge.increment(1.0);
        Raised(gauge)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
