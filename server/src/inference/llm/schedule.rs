//! Which generations the engine runs together in its next unit of work, and how much of a prompt
//! goes in it: pure, so the policy is tested without a model. The engine (`engine.rs`) keeps the
//! thread, the queue of generations in flight and the backend.
//!
//! A unit is either one generation's prompt chunk alone, or, where the backend batches (paged
//! attention), a shared step: the next token of every decoding generation (up to `MAX_BATCH`)
//! and, when mixing, prompt chunks in turn order in the rest of the step's token budget (as
//! continuous-batching servers' "split-fuse" does). Decoding is bound by reading the weights, so
//! a step for several costs about what one costs, a newcomer's prompt does not stall the replies
//! already running, and several short prompts arriving together run in one step, not one each.

use std::{collections::VecDeque, time::Instant};

/// Most generations one decoding step runs together.
pub const MAX_BATCH: usize = 32;

/// What the schedule needs to know of a generation in flight.
pub trait InFlight {
    /// Past its prompt: each step gives it one token.
    fn is_decoding(&self) -> bool;
    fn is_cancelled(&self) -> bool;
    /// Prompt tokens not run yet (0 once decoding).
    fn prompt_left(&self) -> usize;
    /// When it reached the engine: prompts are run oldest first.
    fn arrival(&self) -> Instant;
}

/// The engine's scheduling settings.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The backend runs several generations in one step (paged attention).
    pub batches: bool,
    /// A prompt chunk may ride along a step of decoding generations.
    pub mixed_steps: bool,
    /// A prompt's chunk when it runs alone and nothing else waits (`None`: the whole prompt).
    pub prefill_chunk: Option<usize>,
    /// A prompt's chunk while others wait, and a shared step's tokens in all.
    pub shared_prefill_chunk: usize,
}

impl Policy {
    /// Whether `first`, next in turn, leads a shared step: when decoding, or as a prompt when
    /// mixing and anything else is in flight. Otherwise its prompt chunk runs alone.
    pub fn leads_a_step<G: InFlight>(&self, first: &G, others: &VecDeque<G>) -> bool {
        let can_share = || self.mixed_steps && others.iter().any(|g| !g.is_cancelled());
        self.batches && !first.is_cancelled() && (first.is_decoding() || can_share())
    }

    /// The step led by `first`: every decoding generation of `others` (up to [`MAX_BATCH`] in
    /// all), each for one token, and, when mixing, prompts oldest first for chunks that fill the
    /// rest of `shared_prefill_chunk` (a prompt leading the step gets one token when decoding
    /// left none, so prompts always move, and the step never passes the budget otherwise). Oldest
    /// first, a burst of prompts gets first tokens one after another rather than all late.
    /// Returns the step, each with its tokens, and the generations left waiting, in turn order.
    pub fn join_step<G: InFlight>(&self, first: G, others: VecDeque<G>) -> (Vec<(G, usize)>, VecDeque<G>) {
        let mut all: Vec<G> = std::iter::once(first).chain(others).collect();
        let live = |g: &G| !g.is_cancelled();
        // A prompt leading the step keeps a place.
        let places = MAX_BATCH - usize::from(!all[0].is_decoding());
        let mut tokens = vec![0; all.len()];
        let mut decoding = 0;
        for (i, g) in all.iter().enumerate() {
            if g.is_decoding() && live(g) && decoding < places {
                tokens[i] = 1;
                decoding += 1;
            }
        }
        let mut budget = self.shared_prefill_chunk.saturating_sub(decoding);
        let mut prompts: Vec<usize> = (0..all.len())
            .filter(|&i| !all[i].is_decoding() && live(&all[i]) && (i == 0 || self.mixed_steps))
            .collect();
        prompts.sort_by_key(|&i| all[i].arrival());
        let mut taken = decoding;
        for &i in &prompts {
            let room = taken < places || i == 0;
            let n = all[i].prompt_left().min(budget);
            if room && n > 0 {
                budget -= n;
                tokens[i] = n;
                taken += 1;
            }
        }
        // A prompt leading a step moves even when decoding took the whole budget, by one token;
        // never otherwise: a token past the budget costs a whole block of the kernels' tiles
        // (measured: steps of 257 tokens made four 900-token prompts 11% slower).
        if prompts.contains(&0) && prompts.iter().all(|&i| tokens[i] == 0) {
            tokens[0] = 1;
            taken += 1;
        }
        let (mut step, mut waiting) = (Vec::with_capacity(taken), VecDeque::with_capacity(all.len() - taken));
        for (g, n) in all.drain(..).zip(tokens) {
            match n {
                0 => waiting.push_back(g),
                n => step.push((g, n)),
            }
        }
        (step, waiting)
    }

    /// A prompt's chunk when it runs alone: all of it (or `prefill_chunk`) when nothing else
    /// waits, the shared chunk when others do, so they get their turn soon.
    pub fn solo_chunk(&self, others_waiting: bool) -> usize {
        match others_waiting {
            false => self.prefill_chunk.unwrap_or(usize::MAX),
            true => self.shared_prefill_chunk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct G {
        id: usize,
        decoding: bool,
        cancelled: bool,
        left: usize,
    }

    impl InFlight for G {
        fn is_decoding(&self) -> bool {
            self.decoding
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled
        }
        fn prompt_left(&self) -> usize {
            self.left
        }
        /// Generations arrived in the order of their ids.
        fn arrival(&self) -> Instant {
            static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            *BASE.get_or_init(Instant::now) + std::time::Duration::from_millis(self.id as u64)
        }
    }

    fn decoding(id: usize) -> G {
        G { id, decoding: true, cancelled: false, left: 0 }
    }

    /// A prompt longer than any step's budget.
    fn prompt(id: usize) -> G {
        G { id, decoding: false, cancelled: false, left: 1000 }
    }

    fn short(id: usize, left: usize) -> G {
        G { id, decoding: false, cancelled: false, left }
    }

    const PAGED: Policy =
        Policy { batches: true, mixed_steps: true, prefill_chunk: Some(256), shared_prefill_chunk: 64 };

    fn ids(gs: &[(G, usize)]) -> Vec<(usize, usize)> {
        gs.iter().map(|(g, n)| (g.id, *n)).collect()
    }

    fn waiting(gs: VecDeque<G>) -> Vec<usize> {
        gs.iter().map(|g| g.id).collect()
    }

    #[test]
    fn a_decoding_generation_leads_and_every_decoding_one_joins_with_a_prompt_in_the_budget() {
        let others = VecDeque::from([prompt(1), decoding(2), prompt(3), decoding(4)]);
        assert!(PAGED.leads_a_step(&decoding(0), &others));
        let (step, left) = PAGED.join_step(decoding(0), others);
        assert_eq!(ids(&step), [(0, 1), (1, 61), (2, 1), (4, 1)], "64 tokens: 3 decoding, 61 of the first prompt");
        assert_eq!(waiting(left), [3]);
    }

    #[test]
    fn short_prompts_share_the_budget_in_turn_order() {
        let others = VecDeque::from([short(1, 20), decoding(2), short(3, 30), prompt(4), short(5, 5)]);
        let (step, left) = PAGED.join_step(decoding(0), others);
        // 62 tokens for prompts: 20, 30, then 12 of the long one; the last waits its turn.
        assert_eq!(ids(&step), [(0, 1), (1, 20), (2, 1), (3, 30), (4, 12)]);
        assert_eq!(waiting(left), [5]);
    }

    #[test]
    fn a_prompt_leads_beside_anything_in_flight_and_always_moves() {
        assert!(!PAGED.leads_a_step(&prompt(0), &VecDeque::new()), "alone, it runs alone");
        let others = VecDeque::from([prompt(1), decoding(2)]);
        assert!(PAGED.leads_a_step(&prompt(0), &others));
        let (step, left) = PAGED.join_step(prompt(0), others);
        assert_eq!((ids(&step), waiting(left)), (vec![(0, 63), (2, 1)], vec![1]));
        // With more decoding than the budget, a leading prompt still gets one token.
        let crowd: VecDeque<G> = (1..=31).map(decoding).collect();
        let tight = Policy { shared_prefill_chunk: 16, ..PAGED };
        let (step, _) = tight.join_step(prompt(0), crowd);
        assert_eq!((step[0].1, step.len()), (1, 32));
    }

    #[test]
    fn prompts_run_oldest_first_whoever_leads() {
        let others = VecDeque::from([short(1, 100), short(2, 100)]);
        assert!(PAGED.leads_a_step(&short(5, 100), &others), "prompts batch together too");
        let (step, left) = PAGED.join_step(short(5, 100), others);
        assert_eq!(ids(&step), [(1, 64)], "the oldest takes the whole budget, not one token more");
        assert_eq!(waiting(left), [5, 2]);
        // Room left after the oldest: the next in age, the leader only in its turn.
        let others = VecDeque::from([short(1, 40), short(2, 100)]);
        let (step, left) = PAGED.join_step(short(5, 100), others);
        assert_eq!(ids(&step), [(1, 40), (2, 24)]);
        assert_eq!(waiting(left), [5]);
    }

    #[test]
    fn a_step_never_passes_its_budget_unless_decoding_alone_fills_it() {
        // Every mix of up to 6 generations (decoding, long or short prompts), each one leading.
        for mix in 0..3usize.pow(6) {
            let all: Vec<G> = (0..6)
                .map(|i| match (mix / 3usize.pow(i as u32)) % 3 {
                    0 => decoding(i),
                    1 => prompt(i),
                    _ => short(i, 1 + i * 7),
                })
                .collect();
            for lead in 0..all.len() {
                let others: VecDeque<G> = all.iter().enumerate().filter(|(i, _)| *i != lead).map(|(_, g)| *g).collect();
                let (step, _) = PAGED.join_step(all[lead], others);
                let decoding = step.iter().filter(|(g, _)| g.decoding).count();
                let total: usize = step.iter().map(|(_, n)| n).sum();
                assert!(!step.is_empty(), "mix {mix}, lead {lead}");
                assert!(total <= PAGED.shared_prefill_chunk.max(decoding + 1), "mix {mix}, lead {lead}: {total}");
            }
        }
    }

    #[test]
    fn unmixed_steps_keep_prompts_out_and_unbatched_backends_run_one_at_a_time() {
        let unmixed = Policy { mixed_steps: false, ..PAGED };
        let others = VecDeque::from([prompt(1), decoding(2)]);
        assert!(!unmixed.leads_a_step(&prompt(0), &others));
        let (step, _) = unmixed.join_step(decoding(0), others.clone());
        assert_eq!(ids(&step), [(0, 1), (2, 1)]);
        let stateful = Policy { batches: false, ..PAGED };
        assert!(!stateful.leads_a_step(&decoding(0), &others));
    }

    #[test]
    fn cancelled_generations_never_join_and_never_lead() {
        let gone = G { cancelled: true, ..decoding(1) };
        let others = VecDeque::from([gone, decoding(2)]);
        assert!(!PAGED.leads_a_step(&G { cancelled: true, ..decoding(0) }, &others));
        let (step, left) = PAGED.join_step(decoding(0), others);
        assert_eq!(ids(&step), [(0, 1), (2, 1)]);
        assert_eq!(waiting(left), [1], "left for the engine to end");
    }

    #[test]
    fn a_step_holds_at_most_max_batch_and_prompts_never_push_decoding_out() {
        let others: VecDeque<G> = (1..=40).map(decoding).collect();
        let (step, left) = PAGED.join_step(decoding(0), others);
        assert_eq!(step.len(), MAX_BATCH);
        assert_eq!(waiting(left), (32..=40).collect::<Vec<_>>());
        // Prompts first in turn, 33 decoding behind them: the prompts wait, 32 decode.
        let mut others: VecDeque<G> = (1..=3).map(|i| short(i, 1)).collect();
        others.extend((4..=36).map(decoding));
        let (step, left) = Policy { shared_prefill_chunk: 256, ..PAGED }.join_step(decoding(0), others);
        assert!(step.iter().all(|(g, _)| g.decoding) && step.len() == MAX_BATCH);
        assert_eq!(waiting(left), [1, 2, 3, 35, 36]);
    }

    #[test]
    fn a_prompt_alone_runs_whole_or_gives_way_to_waiting_work() {
        assert_eq!(PAGED.solo_chunk(false), 256);
        assert_eq!(PAGED.solo_chunk(true), 64);
        assert_eq!(Policy { prefill_chunk: None, ..PAGED }.solo_chunk(false), usize::MAX);
    }
}
