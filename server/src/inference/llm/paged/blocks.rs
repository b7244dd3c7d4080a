//! Which cache blocks hold which tokens, for paged attention.
//!
//! The KV cache is one pool of fixed-size blocks per layer, shared by every conversation. A
//! sequence owns a list of blocks; token `i` of it lives in block `blocks[i / block_size]`. Unlike
//! a stateful request's cache, this one can be cut anywhere: a diverged prompt (edited message,
//! regenerated reply, the reasoning the template drops) keeps its common prefix and overwrites the
//! rest in place, so nothing is masked and nothing leaks memory.

/// The free blocks of the pool.
#[derive(Debug)]
pub struct BlockPool {
    free: Vec<u32>,
    total: usize,
    block_size: usize,
}

impl BlockPool {
    pub fn new(total: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "a block holds at least one token");
        // Reversed, so blocks are handed out from 0 up (easier to read in tests and dumps).
        BlockPool { free: (0..total as u32).rev().collect(), total, block_size }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Add blocks `total..new_total` (the cache tensors have grown).
    pub fn grow(&mut self, new_total: usize) {
        // Below the free blocks already there, which are handed out first.
        let fresh: Vec<u32> = (self.total as u32..new_total as u32).rev().collect();
        self.free.splice(0..0, fresh);
        self.total = self.total.max(new_total);
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }
}

/// One conversation's cached tokens and the blocks that hold them.
#[derive(Debug, Default, PartialEq)]
pub struct Sequence {
    tokens: Vec<u32>,
    blocks: Vec<u32>,
}

/// What to run for a new prompt: `feed` goes in at positions `reused..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub reused: usize,
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

    /// Keep the longest cached prefix of `prompt` (non-empty), but always re-run its last token,
    /// whose logits start the reply; release blocks past what the kept prefix needs.
    pub fn plan(&mut self, prompt: &[u32], pool: &mut BlockPool) -> Plan {
        assert!(!prompt.is_empty(), "a prompt has at least one token");
        let common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let keep = common.min(prompt.len() - 1);
        self.truncate(keep, pool);
        Plan { reused: keep, feed: prompt[keep..].to_vec() }
    }

    /// Make room for `more` tokens after the cached ones (blocks only; call `append` once they ran).
    pub fn reserve(&mut self, more: usize, pool: &mut BlockPool) -> Result<(), OutOfBlocks> {
        let needed = pool.blocks_for(self.tokens.len() + more).saturating_sub(self.blocks.len());
        if needed > pool.free.len() {
            return Err(OutOfBlocks { needed, free: pool.free.len() });
        }
        let at = pool.free.len() - needed;
        self.blocks.extend(pool.free.drain(at..).rev());
        Ok(())
    }

    /// Record tokens that have just been run (their blocks reserved before).
    pub fn append(&mut self, tokens: &[u32], pool: &BlockPool) {
        self.tokens.extend_from_slice(tokens);
        debug_assert!(pool.blocks_for(self.tokens.len()) <= self.blocks.len(), "append without reserve");
    }

    /// Forget everything after the first `len` tokens and give back the blocks that frees.
    pub fn truncate(&mut self, len: usize, pool: &mut BlockPool) {
        self.tokens.truncate(len);
        let keep = pool.blocks_for(len);
        if self.blocks.len() > keep {
            pool.free.extend(self.blocks.drain(keep..).rev());
        }
    }

    /// Give every block back (eviction, or the conversation is gone).
    pub fn release(&mut self, pool: &mut BlockPool) {
        self.truncate(0, pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(seq: &mut Sequence, tokens: &[u32], pool: &mut BlockPool) {
        seq.reserve(tokens.len(), pool).unwrap();
        seq.append(tokens, pool);
    }

    #[test]
    fn blocks_follow_the_token_count() {
        let mut pool = BlockPool::new(4, 2);
        let mut seq = Sequence::new();
        assert_eq!(seq.plan(&[1, 2, 3], &mut pool), Plan { reused: 0, feed: vec![1, 2, 3] });
        ran(&mut seq, &[1, 2, 3], &mut pool);
        assert_eq!((seq.blocks(), pool.free()), (&[0, 1][..], 2));
        ran(&mut seq, &[4], &mut pool); // fills block 1
        assert_eq!(seq.blocks(), &[0, 1]);
        ran(&mut seq, &[5], &mut pool); // opens block 2
        assert_eq!((seq.blocks(), pool.free()), (&[0, 1, 2][..], 1));
    }

    #[test]
    fn a_diverged_prompt_keeps_the_prefix_and_frees_the_rest() {
        let mut pool = BlockPool::new(8, 2);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2, 3, 7, 8, 9], &mut pool);
        assert_eq!(seq.blocks(), &[0, 1, 2]);
        // The template dropped the reasoning [7]: keep [1 2 3], overwrite from position 3.
        let plan = seq.plan(&[1, 2, 3, 8, 4], &mut pool);
        assert_eq!(plan, Plan { reused: 3, feed: vec![8, 4] });
        assert_eq!((seq.tokens(), seq.blocks(), pool.free()), (&[1, 2, 3][..], &[0, 1][..], 6));
        ran(&mut seq, &plan.feed, &mut pool);
        assert_eq!(seq.tokens(), &[1, 2, 3, 8, 4]);
        assert_eq!(seq.blocks(), &[0, 1, 2]);
    }

    #[test]
    fn the_same_prompt_again_reruns_its_last_token() {
        let mut pool = BlockPool::new(8, 4);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2, 3, 7, 8], &mut pool);
        assert_eq!(seq.plan(&[1, 2, 3], &mut pool), Plan { reused: 2, feed: vec![3] });
        assert_eq!(seq.blocks(), &[0]);
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
        assert_eq!(other.blocks(), &[0, 1]);
    }

    #[test]
    fn a_grown_pool_hands_out_the_old_free_blocks_first() {
        let mut pool = BlockPool::new(3, 1);
        let mut seq = Sequence::new();
        ran(&mut seq, &[1, 2], &mut pool);
        pool.grow(5);
        assert_eq!((pool.total(), pool.free()), (5, 3));
        ran(&mut seq, &[3, 4, 5], &mut pool);
        assert_eq!(seq.blocks(), &[0, 1, 2, 3, 4]);
        assert_eq!(seq.reserve(1, &mut pool), Err(OutOfBlocks { needed: 1, free: 0 }));
    }
}
