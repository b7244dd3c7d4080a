//! Choosing the next token from logits.
//!
//! Order, as in Hugging Face transformers: repetition penalty → temperature → top-k → top-p →
//! draw. `temperature == 0` is greedy (argmax, first index wins a tie), which is what makes output
//! token-exact against openvino-genai. Draws come from ChaCha8 (`rand_chacha`) seeded with the
//! request's seed: one `next_u64` per sampled token, whose top 53 bits make an `f64` in [0, 1), so
//! the same seed, prompt and settings give the same tokens on every run and machine.

use rand_chacha::{
    rand_core::{RngCore, SeedableRng},
    ChaCha8Rng,
};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy decoding.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probabilities sum to at least this; 1 keeps all.
    pub top_p: f32,
    /// Penalty for tokens already in the context (CTRL paper / transformers): positive logits are
    /// divided by it, negative ones multiplied; 1 disables it.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 0 }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// Sampling settings a caller chose; what is left out comes from the model's
/// `generation_config.json` (see `files::GenerationDefaults::resolve`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingOverrides {
    /// 0 means greedy.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Absent: a fresh random seed, reported back in the completion.
    pub seed: Option<u64>,
}

impl SamplingOverrides {
    pub fn greedy() -> Self {
        SamplingOverrides { temperature: Some(0.0), ..Default::default() }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Tokens seen in the prompt or generated so far (for the repetition penalty).
    seen: Vec<u32>,
    seen_mask: Vec<bool>,
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut sampler = Sampler { params, rng, seen: Vec::new(), seen_mask: Vec::new() };
        if sampler.params.repetition_penalty != 1.0 {
            prompt.iter().for_each(|&id| sampler.accept(id));
        }
        sampler
    }

    /// Record a generated token (it now counts for the repetition penalty).
    pub fn accept(&mut self, id: u32) {
        if self.params.repetition_penalty == 1.0 {
            return;
        }
        let i = id as usize;
        if i >= self.seen_mask.len() {
            self.seen_mask.resize(i + 1, false);
        }
        if !self.seen_mask[i] {
            self.seen_mask[i] = true;
            self.seen.push(id);
        }
    }

    /// The next token. `logits` is scratch space and is modified.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        let penalty = self.params.repetition_penalty;
        if penalty != 1.0 {
            for &id in &self.seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        if self.params.is_greedy() {
            return argmax(logits) as u32;
        }
        let candidates = top_candidates(logits, self.params.temperature, self.params.top_k, self.params.top_p);
        let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
        let uniform = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut target = uniform * total;
        for &(id, p) in &candidates {
            if target < p {
                return id;
            }
            target -= p;
        }
        candidates.last().map_or(0, |&(id, _)| id)
    }
}

/// Index of the largest value; the first wins a tie.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// `(token, unnormalised probability)` after temperature, top-k and top-p.
fn top_candidates(logits: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<(u32, f64)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let t = temperature as f64;
    let probs: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max) / t).exp()).collect();
    if top_k > 0 && top_k < probs.len() {
        // top-p then applies to the renormalised top-k set, as in transformers.
        let best = largest(&probs, top_k);
        let mass = best.iter().map(|&(_, p)| p).sum();
        return nucleus(best, top_p, mass);
    }
    if top_p >= 1.0 {
        return probs.into_iter().enumerate().map(|(i, p)| (i as u32, p)).collect();
    }
    // Sorting 150k probabilities for every token is slow; the nucleus is almost always small, so
    // look at the best 64, then 256, … and sort everything only when that is not enough.
    let total: f64 = probs.iter().sum();
    let mut n = 64.min(probs.len());
    loop {
        let best = largest(&probs, n);
        let kept: f64 = best.iter().map(|&(_, p)| p).sum();
        if n == probs.len() || kept / total >= top_p as f64 {
            return nucleus(best, top_p, total);
        }
        n = (n * 4).min(probs.len());
    }
}

/// The most likely candidates (sorted, most likely first) whose share of `mass` reaches `top_p`;
/// always at least one.
fn nucleus(mut sorted: Vec<(u32, f64)>, top_p: f32, mass: f64) -> Vec<(u32, f64)> {
    if top_p < 1.0 {
        let mut cum = 0.0;
        let cut = sorted
            .iter()
            .position(|&(_, p)| {
                cum += p;
                cum / mass >= top_p as f64
            })
            .map_or(sorted.len(), |i| i + 1);
        sorted.truncate(cut.max(1));
    }
    sorted
}

/// The `n` largest `(index, value)` pairs, largest first (lower index first on ties).
fn largest(values: &[f64], n: usize) -> Vec<(u32, f64)> {
    let mut items: Vec<(u32, f64)> = values.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
    let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n < items.len() {
        items.select_nth_unstable_by(n, order);
        items.truncate(n);
    }
    items.sort_by(order);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, penalty: f32, seed: u64) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p, repetition_penalty: penalty, seed }
    }

    #[test]
    fn greedy_is_argmax_with_the_first_index_winning_ties() {
        let mut s = Sampler::new(SamplingParams::greedy(), &[]);
        assert_eq!(s.sample(&mut [0.1, 2.0, -1.0, 2.0]), 1);
        assert_eq!(argmax(&[-5.0]), 0);
        // top_k = 1 is greedy too, whatever the temperature.
        let mut s = Sampler::new(params(0.7, 1, 1.0, 1.0, 3), &[]);
        assert_eq!(s.sample(&mut [0.0, 0.5, 0.4]), 1);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut s = Sampler::new(params(0.0, 0, 1.0, 2.0, 0), &[0, 2]);
        // token 0: 3.0 → 1.5; token 1: 2.0 untouched; token 2: -1.0 → -2.0
        let mut logits = [3.0, 2.0, -1.0];
        assert_eq!(s.sample(&mut logits), 1);
        assert_eq!(logits, [1.5, 2.0, -2.0]);
        s.accept(1);
        let mut logits = [3.0, 2.0, -1.0];
        s.sample(&mut logits);
        assert_eq!(logits, [1.5, 1.0, -2.0]);
    }

    #[test]
    fn top_k_and_top_p_keep_exactly_the_expected_tokens() {
        // Probabilities at temperature 1: softmax([ln 4, ln 3, ln 2, ln 1]) = 0.4, 0.3, 0.2, 0.1.
        let logits: Vec<f32> = [4f32, 3.0, 2.0, 1.0].iter().map(|v| v.ln()).collect();
        let ids = |c: Vec<(u32, f64)>| c.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(ids(top_candidates(&logits, 1.0, 0, 1.0)), vec![0, 1, 2, 3]);
        assert_eq!(ids(top_candidates(&logits, 1.0, 2, 1.0)), vec![0, 1]);
        assert_eq!(ids(top_candidates(&logits, 1.0, 0, 0.7)), vec![0, 1]); // 0.4 + 0.3 reaches 0.7
        assert_eq!(ids(top_candidates(&logits, 1.0, 0, 0.71)), vec![0, 1, 2]);
        assert_eq!(ids(top_candidates(&logits, 1.0, 0, 0.01)), vec![0]); // always at least one
                                                                         // top-p applies to the renormalised top-k set: 0.4/0.7 = 0.57 < 0.6 → both stay …
        assert_eq!(ids(top_candidates(&logits, 1.0, 2, 0.6)), vec![0, 1]);
        // … and with top-k 3, 0.4/0.9 + 0.3/0.9 = 0.78 reaches 0.75 before the third.
        assert_eq!(ids(top_candidates(&logits, 1.0, 3, 0.75)), vec![0, 1]);
    }

    #[test]
    fn the_nucleus_search_agrees_with_a_full_sort_on_a_large_vocabulary() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        for top_p in [0.1, 0.5, 0.9, 0.99] {
            let fast = top_candidates(&logits, 0.8, 0, top_p);
            let probs: Vec<f64> = logits.iter().map(|&l| ((l as f64 - 9.99) / 0.8).exp()).collect();
            let total: f64 = probs.iter().sum();
            let all = largest(&probs, probs.len());
            let mut cum = 0.0;
            let n = all
                .iter()
                .position(|&(_, p)| {
                    cum += p;
                    cum / total >= top_p as f64
                })
                .unwrap()
                + 1;
            assert_eq!(fast.len(), n, "top_p {top_p}");
            assert_eq!(fast.iter().map(|c| c.0).collect::<Vec<_>>(), all[..n].iter().map(|c| c.0).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_draws_and_another_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, 1.0, seed), &[]);
            (0..40).map(|_| s.sample(&mut logits.clone())).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // One token with logit 5 among 49 at 0 has probability e^5 / (e^5 + 49) = 0.75.
        let mut logits = vec![0.0f32; 50];
        logits[17] = 5.0;
        let mut s = Sampler::new(params(1.0, 0, 1.0, 1.0, 11), &[]);
        let hits = (0..400).filter(|_| s.sample(&mut logits.clone()) == 17).count();
        assert!((270..330).contains(&hits), "{hits} of 400");
    }
}
