//! What the benchmark commands share: running one completion, medians, peak memory.

use crate::inference::llm::{Completion, GenerateRequest, GenerationParams, LlmEngine, Prompt};

/// One completion on the engine, to its end.
pub fn complete(
    engine: &LlmEngine,
    key: Option<&str>,
    prompt: Prompt,
    params: &GenerationParams,
) -> Result<Completion, String> {
    let request = GenerateRequest { conversation: key.map(String::from), prompt, params: params.clone() };
    engine.generate(request).map_err(|e| e.to_string())?.blocking_completion().map_err(|e| e.to_string())
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
