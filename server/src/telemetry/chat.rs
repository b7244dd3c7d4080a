//! One reply's clock: the chat engine (real or mock) tells it when the reply reached it, when
//! work on its prompt began, each token, and how it ended; it records the chat metrics. It also
//! keeps the waiting and running gauges, and gives back its place there however it is dropped.

use super::catalogue::{
    CHAT_DURATION, CHAT_GENERATED_TOKENS, CHAT_ITL, CHAT_PROMPT_TOKENS, CHAT_QUEUE_WAIT, CHAT_REPLIES, CHAT_RUNNING,
    CHAT_TTFT, CHAT_WAITING,
};
use std::time::Instant;

/// The `finish_reason` label's values.
pub const FINISH_REASONS: [&str; 4] = ["stop", "length", "cancelled", "error"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Ended,
}

pub struct ReplyClock {
    submitted: Instant,
    last_token: Option<Instant>,
    phase: Phase,
    /// Looked up once: it gets a sample for every token.
    inter_token: metrics::Histogram,
}

/// How a reply ended, for the metrics.
pub struct Ended {
    /// One of [`FINISH_REASONS`].
    pub reason: &'static str,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, those found in the conversation's kept KV cache.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
}

impl ReplyClock {
    /// A reply that reached the engine at `submitted` and was admitted (it waits for its turn).
    pub fn admitted(submitted: Instant) -> ReplyClock {
        metrics::gauge!(CHAT_WAITING).increment(1.0);
        ReplyClock { submitted, last_token: None, phase: Phase::Waiting, inter_token: metrics::histogram!(CHAT_ITL) }
    }

    /// The engine starts on the reply's prompt (later calls do nothing).
    pub fn begin(&mut self) {
        if self.phase == Phase::Waiting {
            metrics::histogram!(CHAT_QUEUE_WAIT).record(self.submitted.elapsed().as_secs_f64());
            self.move_to(Phase::Running);
        }
    }

    /// A token was generated.
    pub fn token(&mut self) {
        let now = Instant::now();
        match self.last_token.replace(now) {
            None => metrics::histogram!(CHAT_TTFT).record(now.duration_since(self.submitted).as_secs_f64()),
            Some(previous) => self.inter_token.record(now.duration_since(previous).as_secs_f64()),
        }
    }

    /// The reply ended; recorded once (a second call does nothing).
    pub fn end(&mut self, ended: Ended) {
        if self.phase == Phase::Ended {
            return;
        }
        self.move_to(Phase::Ended);
        metrics::histogram!(CHAT_DURATION).record(self.submitted.elapsed().as_secs_f64());
        metrics::counter!(CHAT_REPLIES, "finish_reason" => ended.reason).increment(1);
        let reused = ended.reused_tokens.min(ended.prompt_tokens);
        metrics::counter!(CHAT_PROMPT_TOKENS, "source" => "cache").increment(reused as u64);
        metrics::counter!(CHAT_PROMPT_TOKENS, "source" => "computed").increment((ended.prompt_tokens - reused) as u64);
        metrics::counter!(CHAT_GENERATED_TOKENS).increment(ended.generated_tokens as u64);
    }

    fn move_to(&mut self, phase: Phase) {
        let gauge = |phase| match phase {
            Phase::Waiting => Some(metrics::gauge!(CHAT_WAITING)),
            Phase::Running => Some(metrics::gauge!(CHAT_RUNNING)),
            Phase::Ended => None,
        };
        if let Some(from) = gauge(self.phase) {
            from.decrement(1.0);
        }
        if let Some(to) = gauge(phase) {
            to.increment(1.0);
        }
        self.phase = phase;
    }
}

impl Drop for ReplyClock {
    /// A reply dropped without an end (the engine thread went away) leaves the gauges as if
    /// it had ended.
    fn drop(&mut self) {
        self.move_to(Phase::Ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// The value of `name` (with exactly `labels`) in a rendering, or 0 when absent.
    fn value(rendered: &str, series: &str) -> f64 {
        rendered.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
    }

    #[test]
    fn a_reply_moves_from_waiting_to_running_to_counted() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut clock = ReplyClock::admitted(Instant::now());
            let r = handle.render();
            assert_eq!((value(&r, CHAT_WAITING), value(&r, CHAT_RUNNING)), (1.0, 0.0), "{r}");
            clock.begin();
            clock.begin();
            clock.token();
            clock.token();
            clock.token();
            let r = handle.render();
            assert_eq!((value(&r, CHAT_WAITING), value(&r, CHAT_RUNNING)), (0.0, 1.0), "{r}");
            clock.end(Ended { reason: "cancelled", prompt_tokens: 10, reused_tokens: 4, generated_tokens: 3 });
            clock.end(Ended { reason: "stop", prompt_tokens: 1, reused_tokens: 0, generated_tokens: 1 });
            drop(clock);
            let r = handle.render();
            assert_eq!((value(&r, CHAT_WAITING), value(&r, CHAT_RUNNING)), (0.0, 0.0), "{r}");
            assert_eq!(value(&r, &format!("{CHAT_REPLIES}{{finish_reason=\"cancelled\"}}")), 1.0, "{r}");
            assert_eq!(value(&r, &format!("{CHAT_REPLIES}{{finish_reason=\"stop\"}}")), 0.0, "ended once: {r}");
            assert_eq!(value(&r, &format!("{CHAT_PROMPT_TOKENS}{{source=\"cache\"}}")), 4.0, "{r}");
            assert_eq!(value(&r, &format!("{CHAT_PROMPT_TOKENS}{{source=\"computed\"}}")), 6.0, "{r}");
            assert_eq!(value(&r, CHAT_GENERATED_TOKENS), 3.0, "{r}");
            // Three tokens: one first token, two gaps; one wait; one reply.
            assert_eq!(value(&r, &format!("{CHAT_TTFT}_count")), 1.0, "{r}");
            assert_eq!(value(&r, &format!("{CHAT_ITL}_count")), 2.0, "{r}");
            assert_eq!(value(&r, &format!("{CHAT_QUEUE_WAIT}_count")), 1.0, "{r}");
            assert_eq!(value(&r, &format!("{CHAT_DURATION}_count")), 1.0, "{r}");
        });
    }

    #[test]
    fn a_dropped_reply_gives_back_its_place() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            drop(ReplyClock::admitted(Instant::now()));
            let mut running = ReplyClock::admitted(Instant::now());
            running.begin();
            drop(running);
            let r = handle.render();
            assert_eq!((value(&r, CHAT_WAITING), value(&r, CHAT_RUNNING)), (0.0, 0.0), "{r}");
            assert_eq!(value(&r, &format!("{CHAT_REPLIES}{{finish_reason=\"error\"}}")), 0.0, "{r}");
        });
    }
}
