//! One conversation's cached tokens and the blocks that hold them.
//!
//! Unlike a stateful request's cache, this one can be cut anywhere: a diverged prompt (edited
//! message, regenerated reply, the reasoning the template drops) keeps its common prefix and
//! writes the rest anew, so nothing is masked and nothing leaks memory. A new prompt may also
//! start on blocks another conversation published (`blocks.rs`); writing into a block someone
//! else holds copies it first.

use super::blocks::{extend_prefix, BlockPool, Prefix};

#[derive(Debug, Default, PartialEq)]
pub struct Sequence {
    tokens: Vec<u32>,
    blocks: Vec<u32>,
    /// The prefix digest at the end of each full block, in order.
    prefixes: Vec<Prefix>,
}

/// What to run for a new prompt: `feed` goes in at positions `reused..`; `shared` of the reused
/// tokens came from blocks other conversations published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub reused: usize,
    pub shared: usize,
    pub feed: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the KV cache is full: {needed} more blocks needed, {free} free")]
pub struct OutOfBlocks {
    pub needed: usize,
    pub free: usize,
}

impl Sequence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens whose keys and values are in the cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// Keep the longest cached prefix of `prompt` (non-empty), its own or published by others,
    /// but always re-run its last token, whose logits start the reply; let go of blocks past
    /// what the kept prefix needs.
    pub fn plan(&mut self, prompt: &[u32], pool: &mut BlockPool) -> Plan {
        let published = published_prefix(prompt, pool);
        self.plan_from(prompt, published, pool)
    }

    /// [`plan`](Self::plan) with this sequence's own cache only (prefix sharing off).
    pub fn plan_own(&mut self, prompt: &[u32], pool: &mut BlockPool) -> Plan {
        self.plan_from(prompt, Vec::new(), pool)
    }

    fn plan_from(&mut self, prompt: &[u32], published: Vec<(u32, Prefix)>, pool: &mut BlockPool) -> Plan {
        assert!(!prompt.is_empty(), "a prompt has at least one token");
        let own = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let size = pool.block_size();
        let mut shared = 0;
        if published.len() * size > own {
            self.release(pool);
            for &(block, prefix) in &published {
                pool.hold(block);
                self.blocks.push(block);
                self.prefixes.push(prefix);
            }
            shared = published.len() * size;
            self.tokens.extend_from_slice(&prompt[..shared]);
        }
        let keep = own.max(shared).min(prompt.len() - 1);
        self.truncate(keep, pool);
        Plan { reused: keep, shared: shared.min(keep), feed: prompt[keep..].to_vec() }
    }

    /// Blocks [`reserve`](Self::reserve) would take for `more` tokens.
    pub fn blocks_needed(&self, more: usize, pool: &BlockPool) -> usize {
        let fresh = pool.blocks_for(self.tokens.len() + more).saturating_sub(self.blocks.len());
        fresh + usize::from(self.shared_tail(more, pool).is_some())
    }

    /// Make room for `more` tokens after the cached ones (blocks only; call `append` once they
    /// ran). A partly filled last block that others hold is replaced by a copy (owed to the
    /// cache tensors: `BlockPool::take_copies`); one only this sequence holds is unpublished.
    pub fn reserve(&mut self, more: usize, pool: &mut BlockPool) -> Result<(), OutOfBlocks> {
        let needed = self.blocks_needed(more, pool);
        if needed > pool.free() {
            return Err(OutOfBlocks { needed, free: pool.free() });
        }
        let at = self.tokens.len() / pool.block_size();
        if let Some(block) = self.shared_tail(more, pool) {
            let copy = pool.take().expect("counted above");
            pool.owe_copy(block, copy);
            pool.let_go(block);
            self.blocks[at] = copy;
        } else if more > 0 && at < self.blocks.len() {
            pool.unpublish(self.blocks[at]);
        }
        while self.blocks.len() < pool.blocks_for(self.tokens.len() + more) {
            self.blocks.push(pool.take().expect("counted above"));
        }
        Ok(())
    }

    /// The block the next token goes into, if it is partly filled and held by others too.
    fn shared_tail(&self, more: usize, pool: &BlockPool) -> Option<u32> {
        let size = pool.block_size();
        let block = *self.blocks.get(self.tokens.len() / size)?;
        (more > 0 && !self.tokens.len().is_multiple_of(size) && pool.holders(block) > 1).then_some(block)
    }

    /// Record tokens that have just been run (their blocks reserved before), and publish the
    /// blocks they filled.
    pub fn append(&mut self, tokens: &[u32], pool: &mut BlockPool) {
        self.tokens.extend_from_slice(tokens);
        debug_assert!(pool.blocks_for(self.tokens.len()) <= self.blocks.len(), "append without reserve");
        let size = pool.block_size();
        while self.prefixes.len() < self.tokens.len() / size {
            let i = self.prefixes.len();
            let prefix = extend_prefix(self.prefixes.last(), &self.tokens[i * size..(i + 1) * size]);
            self.prefixes.push(prefix);
            pool.publish(self.blocks[i], prefix);
        }
    }

    /// Forget everything after the first `len` tokens and let go of the blocks that frees.
    pub fn truncate(&mut self, len: usize, pool: &mut BlockPool) {
        self.tokens.truncate(len);
        self.prefixes.truncate(len / pool.block_size());
        let keep = pool.blocks_for(len);
        for block in self.blocks.drain(keep.min(self.blocks.len())..).rev() {
            pool.let_go(block);
        }
    }

    /// Let go of every block (eviction, or the conversation is gone); those holding published
    /// prefixes stay idle for later prompts.
    pub fn release(&mut self, pool: &mut BlockPool) {
        self.truncate(0, pool);
    }
}

/// The published blocks that hold `prompt`'s leading full blocks, as far as they go.
fn published_prefix(prompt: &[u32], pool: &BlockPool) -> Vec<(u32, Prefix)> {
    let mut found: Vec<(u32, Prefix)> = vec![];
    for chunk in prompt.chunks_exact(pool.block_size()) {
        let prefix = extend_prefix(found.last().map(|(_, p)| p), chunk);
        match pool.find(&prefix) {
            Some(block) => found.push((block, prefix)),
            None => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(seq: &mut Sequence, tokens: &[u32], pool: &mut BlockPool) {
        seq.reserve(tokens.len(), pool).unwrap();
        seq.append(tokens, pool);
    }

    fn plan(reused: usize, shared: usize, feed: &[u32]) -> Plan {
        Plan { reused, shared, feed: feed.to_vec() }
    }

    #[test]
    fn blocks_follow_the_token_count() {
        let mut pool = BlockPool::new(4, 2);
        let mut seq = Sequence::new();
        assert_eq!(seq.plan(&[1, 2, 3], &mut pool), plan(0, 0, &[1, 2, 3]));
        ran(&mut seq, &[1, 2, 3], &mut pool);
        assert_eq!((seq.blocks(), pool.free()), (&[0, 1][..], 2));
        ran(&mut seq, &[4], &mut pool); // fills block 1
        assert_eq!(seq.blocks(), &[0, 1]);
        ran(&mut seq, &[5], &mut pool); // opens block 2
        assert_eq!((seq.blocks(), pool.free()), (&[0, 1, 2][..], 1));
        assert!(pool.take_copies().is_empty());
    }

    #[test]
    fn a_diverged_prompt_keeps_the_prefix_and_lets_go_of_the_rest() {
        let mut pool = BlockPool::new(8, 2);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2, 3, 7, 8, 9], &mut pool);
        assert_eq!(seq.blocks(), &[0, 1, 2]);
        // The template dropped the reasoning [7]: keep [1 2 3], overwrite from position 3.
        let planned = seq.plan(&[1, 2, 3, 8, 4], &mut pool);
        assert_eq!(planned, plan(3, 0, &[8, 4]));
        assert_eq!((seq.tokens(), seq.blocks()), (&[1, 2, 3][..], &[0, 1][..]));
        // Block 2 held [8 9], a published prefix: idle, not lost.
        assert_eq!((pool.free(), pool.idle()), (6, 1));
        ran(&mut seq, &planned.feed, &mut pool);
        assert_eq!(seq.tokens(), &[1, 2, 3, 8, 4]);
        assert_eq!(seq.blocks(), &[0, 1, 3]);
        assert!(pool.take_copies().is_empty(), "block 1 was only this sequence's: written in place");
    }

    #[test]
    fn the_same_prompt_again_reruns_its_last_token() {
        let mut pool = BlockPool::new(8, 4);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2, 3, 7, 8], &mut pool);
        assert_eq!(seq.plan(&[1, 2, 3], &mut pool), plan(2, 0, &[3]));
        assert_eq!(seq.blocks(), &[0]);
    }

    #[test]
    fn a_new_sequence_starts_on_the_blocks_another_published() {
        let mut pool = BlockPool::new(8, 2);
        let mut first = Sequence::new();
        ran(&mut first, &[1, 2, 3, 4, 5], &mut pool);
        // [1 2] and [3 4] are full and published; [5] is not.
        let mut second = Sequence::new();
        let planned = second.plan(&[1, 2, 3, 4, 6, 7], &mut pool);
        assert_eq!(planned, plan(4, 4, &[6, 7]));
        assert_eq!(second.blocks(), &[0, 1]);
        assert_eq!((pool.holders(0), pool.holders(1), pool.holders(2)), (2, 2, 1));
        ran(&mut second, &planned.feed, &mut pool);
        assert_eq!(second.blocks(), &[0, 1, 3]);
        assert!(pool.take_copies().is_empty(), "nothing shared was written");
        // A prompt that is exactly the shared blocks re-runs its last token: into a copy.
        let mut third = Sequence::new();
        assert_eq!(third.plan(&[1, 2, 3, 4], &mut pool), plan(3, 3, &[4]));
        ran(&mut third, &[4], &mut pool);
        assert_eq!(third.blocks(), &[0, 4]);
        assert_eq!(pool.take_copies(), vec![(1, 4)]);
        assert_eq!(pool.holders(1), 2);
    }

    #[test]
    fn a_shared_block_is_copied_before_its_holder_writes_over_it() {
        let mut pool = BlockPool::new(8, 2);
        let mut first = Sequence::new();
        ran(&mut first, &[1, 2, 3, 4], &mut pool);
        let mut second = Sequence::new();
        second.plan(&[1, 2, 3, 4, 5], &mut pool);
        ran(&mut second, &[5], &mut pool);
        // The first conversation regenerates from [1 2 3]: block 1 is second's too.
        assert_eq!(first.plan(&[1, 2, 3, 9], &mut pool), plan(3, 0, &[9]));
        ran(&mut first, &[9], &mut pool);
        assert_eq!(pool.take_copies(), vec![(1, 3)]);
        assert_eq!((first.blocks(), second.blocks()), (&[0, 3][..], &[0, 1, 2][..]));
        // [1 2 3 9] is published by first's copy; [1 2 3 4] still by block 1.
        let mut third = Sequence::new();
        assert_eq!(third.plan(&[1, 2, 3, 9, 0], &mut pool).shared, 4);
        assert_eq!(third.blocks(), &[0, 3]);
        let mut fourth = Sequence::new();
        fourth.plan(&[1, 2, 3, 4, 0], &mut pool);
        assert_eq!(fourth.blocks(), &[0, 1]);
    }

    #[test]
    fn an_idle_prefix_is_reused_until_the_pool_needs_its_blocks() {
        let mut pool = BlockPool::new(4, 2);
        let mut first = Sequence::new();
        ran(&mut first, &[1, 2, 3, 4], &mut pool);
        first.release(&mut pool);
        assert_eq!((pool.idle(), pool.free()), (2, 4));
        let mut again = Sequence::new();
        assert_eq!(again.plan(&[1, 2, 3, 4, 5], &mut pool).shared, 4);
        again.release(&mut pool);
        // Someone else needs a block: the prefix's tail is forgotten first, its head stays.
        let mut other = Sequence::new();
        ran(&mut other, &[9, 9, 9, 9, 9, 9], &mut pool);
        assert_eq!(pool.idle(), 1);
        let mut later = Sequence::new();
        assert_eq!(later.plan(&[1, 2, 3, 4, 5], &mut pool), plan(2, 2, &[3, 4, 5]));
        later.release(&mut pool);
        // And all of them: nothing is left to share.
        ran(&mut other, &[9, 9], &mut pool);
        assert_eq!(pool.idle(), 0);
        assert_eq!(later.plan(&[1, 2, 3, 4, 5], &mut pool), plan(0, 0, &[1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_full_pool_refuses_without_taking_anything() {
        let mut pool = BlockPool::new(2, 2);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2, 3], &mut pool);
        assert_eq!(seq.reserve(3, &mut pool), Err(OutOfBlocks { needed: 1, free: 0 }));
        assert_eq!(seq.blocks().len(), 2);
        let mut other = Sequence::new();
        assert_eq!(other.reserve(1, &mut pool), Err(OutOfBlocks { needed: 1, free: 0 }));
        seq.release(&mut pool);
        assert_eq!(pool.free(), 2);
        other.reserve(4, &mut pool).unwrap();
        assert_eq!(other.blocks().len(), 2);
    }

    #[test]
    fn a_copy_counts_as_a_block_needed() {
        let mut pool = BlockPool::new(3, 2);
        let mut first = Sequence::new();
        ran(&mut first, &[1, 2, 3, 4], &mut pool);
        let mut second = Sequence::new();
        second.plan(&[1, 2, 3, 4], &mut pool); // keeps [1 2 3]: block 1 shared, partly
        assert_eq!(second.blocks_needed(1, &pool), 1);
        assert_eq!(second.blocks_needed(2, &pool), 2);
        assert_eq!(second.reserve(3, &mut pool), Err(OutOfBlocks { needed: 2, free: 1 }));
        assert_eq!(pool.holders(1), 2, "a refusal changes nothing");
    }
}
