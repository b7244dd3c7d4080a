//! Which generations the engine runs together in its next unit of work, and how much of a prompt
//! goes in it: pure, so the policy is tested without a model. The engine (`engine.rs`) keeps the
//! thread, the queue of generations in flight and the backend.
//!
//! A unit is either one generation's prompt chunk alone, or, where the backend batches (paged
//! attention), a shared step: the next token of every decoding generation (up to `MAX_BATCH`)
//! and, when mixing, the prompt chunk of at most one other riding along. Decoding is bound by
//! reading the weights, so a step for several costs about what one costs, and a newcomer's
//! prompt does not stall the replies already running.

use std::collections::VecDeque;

/// Most generations one decoding step runs together.
pub const MAX_BATCH: usize = 32;

/// What the schedule needs to know of a generation in flight.
pub trait InFlight {
    /// Past its prompt: each step gives it one token.
    fn is_decoding(&self) -> bool;
    fn is_cancelled(&self) -> bool;
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
    /// Whether `first`, next in turn, leads a shared step: when decoding, or as a prompt riding
    /// along decoding ones when mixing. Otherwise its prompt chunk runs alone.
    pub fn leads_a_step<G: InFlight>(&self, first: &G, others: &VecDeque<G>) -> bool {
        let can_ride = || self.mixed_steps && others.iter().any(|g| g.is_decoding() && !g.is_cancelled());
        self.batches && !first.is_cancelled() && (first.is_decoding() || can_ride())
    }

    /// The step led by `first`: every decoding generation of `others` (up to [`MAX_BATCH`] in
    /// all) and, when mixing, the first prompt in turn if `first` is not one. Returns the step
    /// and the generations left waiting, in their order.
    pub fn join_step<G: InFlight>(&self, first: G, others: VecDeque<G>) -> (Vec<G>, VecDeque<G>) {
        let mut prompt = !first.is_decoding();
        let mut step = vec![first];
        let mut waiting = VecDeque::with_capacity(others.len());
        for other in others {
            let fits = step.len() < MAX_BATCH && !other.is_cancelled();
            if fits && other.is_decoding() {
                step.push(other);
            } else if fits && !prompt && self.mixed_steps {
                prompt = true;
                step.push(other);
            } else {
                waiting.push_back(other);
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

    /// A prompt's chunk in a shared step with `decoding` decoding generations: the step's tokens
    /// in all stay at the shared chunk (the prompt gives way to the decoding tokens), at least 1.
    pub fn shared_chunk(&self, decoding: usize) -> usize {
        self.shared_prefill_chunk.saturating_sub(decoding).max(1)
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
    }

    impl InFlight for G {
        fn is_decoding(&self) -> bool {
            self.decoding
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled
        }
    }

    fn decoding(id: usize) -> G {
        G { id, decoding: true, cancelled: false }
    }

    fn prompt(id: usize) -> G {
        G { id, decoding: false, cancelled: false }
    }

    const PAGED: Policy =
        Policy { batches: true, mixed_steps: true, prefill_chunk: Some(256), shared_prefill_chunk: 64 };

    fn ids(gs: &[G]) -> Vec<usize> {
        gs.iter().map(|g| g.id).collect()
    }

    #[test]
    fn a_decoding_generation_leads_and_every_decoding_one_joins_with_one_prompt() {
        let others = VecDeque::from([prompt(1), decoding(2), prompt(3), decoding(4)]);
        assert!(PAGED.leads_a_step(&decoding(0), &others));
        let (step, waiting) = PAGED.join_step(decoding(0), others);
        assert_eq!(ids(&step), [0, 1, 2, 4], "decoding ones and the first prompt in turn");
        assert_eq!(ids(&waiting.into_iter().collect::<Vec<_>>()), [3]);
    }

    #[test]
    fn a_prompt_leads_only_beside_decoding_ones_and_then_takes_no_other_prompt() {
        let none_decoding = VecDeque::from([prompt(1), prompt(2)]);
        assert!(!PAGED.leads_a_step(&prompt(0), &none_decoding), "it runs alone");
        let others = VecDeque::from([prompt(1), decoding(2)]);
        assert!(PAGED.leads_a_step(&prompt(0), &others));
        let (step, waiting) = PAGED.join_step(prompt(0), others);
        assert_eq!((ids(&step), ids(&waiting.into_iter().collect::<Vec<_>>())), (vec![0, 2], vec![1]));
    }

    #[test]
    fn unmixed_steps_keep_prompts_out_and_unbatched_backends_run_one_at_a_time() {
        let unmixed = Policy { mixed_steps: false, ..PAGED };
        let others = VecDeque::from([prompt(1), decoding(2)]);
        assert!(!unmixed.leads_a_step(&prompt(0), &others));
        let (step, _) = unmixed.join_step(decoding(0), others.clone());
        assert_eq!(ids(&step), [0, 2]);
        let stateful = Policy { batches: false, ..PAGED };
        assert!(!stateful.leads_a_step(&decoding(0), &others));
    }

    #[test]
    fn cancelled_generations_never_join_and_never_lead() {
        let gone = G { cancelled: true, ..decoding(1) };
        let others = VecDeque::from([gone, decoding(2)]);
        assert!(!PAGED.leads_a_step(&G { cancelled: true, ..decoding(0) }, &others));
        let (step, waiting) = PAGED.join_step(decoding(0), others);
        assert_eq!(ids(&step), [0, 2]);
        assert_eq!(ids(&waiting.into_iter().collect::<Vec<_>>()), [1], "left for the engine to end");
    }

    #[test]
    fn a_step_holds_at_most_max_batch_and_the_rest_wait_in_order() {
        let others: VecDeque<G> = (1..=40).map(decoding).collect();
        let (step, waiting) = PAGED.join_step(decoding(0), others);
        assert_eq!(step.len(), MAX_BATCH);
        assert_eq!(ids(&waiting.into_iter().collect::<Vec<_>>()), (32..=40).collect::<Vec<_>>());
    }

    #[test]
    fn chunks_give_way_to_waiting_and_decoding_work() {
        assert_eq!(PAGED.solo_chunk(false), 256);
        assert_eq!(PAGED.solo_chunk(true), 64);
        assert_eq!(Policy { prefill_chunk: None, ..PAGED }.solo_chunk(false), usize::MAX);
        assert_eq!(PAGED.shared_chunk(3), 61, "the step's tokens stay at 64");
        assert_eq!(PAGED.shared_chunk(100), 1, "a prompt always moves");
    }
}
