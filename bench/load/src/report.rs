//! Percentiles and counts over the samples of a load run.

use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};

pub struct Sample {
    pub stream: bool,
    /// HTTP status; 0 when no response came.
    pub status: u16,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    /// A stream's wait for the chat engine: to its `start` event (after any `queued` ones).
    pub wait_ms: Option<f64>,
    /// The stream was told to wait in the chat queue.
    pub queued: bool,
    pub conversation_id: Option<String>,
    pub error: Option<String>,
}

pub struct Report {
    requests: usize,
    seconds: f64,
    by_status: BTreeMap<String, usize>,
    plain: Vec<f64>,
    stream_total: Vec<f64>,
    ttft: Vec<f64>,
    wait: Vec<f64>,
    queued: usize,
    errors: BTreeMap<String, usize>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

impl Report {
    pub fn new(samples: &[Sample], elapsed: Duration) -> Self {
        let mut by_status = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for s in samples {
            let key = if s.status == 0 { "no response".to_string() } else { s.status.to_string() };
            *by_status.entry(key).or_insert(0) += 1;
            if let Some(e) = &s.error {
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
        }
        let ok = |s: &&Sample| s.status == 200 && s.error.is_none();
        Report {
            requests: samples.len(),
            seconds: elapsed.as_secs_f64(),
            by_status,
            plain: sorted(samples.iter().filter(ok).filter(|s| !s.stream).map(|s| s.latency_ms).collect()),
            stream_total: sorted(samples.iter().filter(ok).filter(|s| s.stream).map(|s| s.latency_ms).collect()),
            ttft: sorted(samples.iter().filter(ok).filter_map(|s| s.ttft_ms).collect()),
            wait: sorted(samples.iter().filter(ok).filter_map(|s| s.wait_ms).collect()),
            queued: samples.iter().filter(ok).filter(|s| s.queued).count(),
            errors,
        }
    }

    fn stats(v: &[f64]) -> Value {
        json!({"n": v.len(), "p50": percentile(v, 50.0), "p95": percentile(v, 95.0), "p99": percentile(v, 99.0),
               "max": v.last().copied().unwrap_or(f64::NAN)})
    }

    pub fn json(&self, args: Value) -> Value {
        json!({
            "args": args,
            "requests": self.requests,
            "throughput_rps": self.requests as f64 / self.seconds,
            "by_status": self.by_status,
            "errors": self.errors,
            "plain_latency_ms": Self::stats(&self.plain),
            "stream_ttft_ms": Self::stats(&self.ttft),
            "stream_wait_ms": Self::stats(&self.wait),
            "streams_queued": self.queued,
            "stream_total_ms": Self::stats(&self.stream_total),
        })
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "requests {} in {:.1} s: {:.1} req/s\nby status: {}\n",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        );
        let refused =
            |code: &str| self.by_status.get(code).copied().unwrap_or(0) as f64 * 100.0 / self.requests.max(1) as f64;
        out.push_str(&format!(
            "refused: {:.1}% 429, {:.1}% 503; {} streams waited in the chat queue\n",
            refused("429"),
            refused("503"),
            self.queued
        ));
        for (e, n) in &self.errors {
            out.push_str(&format!("error x{n}: {e}\n"));
        }
        out.push_str(&format!("{:<34}{:>7}{:>10}{:>10}{:>10}{:>10}\n", "ms", "n", "p50", "p95", "p99", "max"));
        for (name, v) in [
            ("POST /chat (JSON), latency", &self.plain),
            ("POST /chat (stream), wait to start", &self.wait),
            ("POST /chat (stream), first token", &self.ttft),
            ("POST /chat (stream), whole reply", &self.stream_total),
        ] {
            out.push_str(&format!(
                "{name:<34}{:>7}{:>10.1}{:>10.1}{:>10.1}{:>10.1}\n",
                v.len(),
                percentile(v, 50.0),
                percentile(v, 95.0),
                percentile(v, 99.0),
                v.last().copied().unwrap_or(f64::NAN)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&v, 50.0), percentile(&v, 95.0), percentile(&v, 99.0)), (50.0, 95.0, 99.0));
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
