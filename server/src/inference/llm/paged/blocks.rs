//! The pool of KV cache blocks, shared by every conversation.
//!
//! The KV cache is one pool of fixed-size blocks per layer. A sequence (`sequence.rs`) holds a
//! list of blocks; token `i` of it lives in block `blocks[i / block_size]`. A full block is
//! published under a digest of every token up to its end, so another sequence whose prompt
//! starts with the same tokens (a shared system prompt, a regenerated reply, a client resending
//! history) takes the block instead of running those tokens again. Blocks are counted by the
//! sequences holding them; one nobody holds but that still holds a known prefix stays, idle,
//! until a prompt wants it again or the pool needs it (least recently used first). A sequence
//! about to write into a block it shares gets its own copy first (the pool records the copy for
//! the cache tensors, `PagedModel` makes it).

use hashlink::LinkedHashSet;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Digest of a token prefix that ends at a block boundary (128 bits of SHA-256 over the
/// previous block's digest and this block's tokens).
pub type Prefix = [u8; 16];

/// The digest of the prefix that is `parent`'s prefix followed by `tokens`.
pub fn extend_prefix(parent: Option<&Prefix>, tokens: &[u32]) -> Prefix {
    let mut hash = Sha256::new();
    hash.update(parent.copied().unwrap_or_default());
    for token in tokens {
        hash.update(token.to_le_bytes());
    }
    hash.finalize()[..16].try_into().expect("16 of 32 bytes")
}

#[derive(Debug)]
pub struct BlockPool {
    /// Blocks nobody holds and that hold nothing worth keeping.
    free: Vec<u32>,
    /// Blocks nobody holds that still hold a published prefix, least recently used first.
    idle: LinkedHashSet<u32>,
    /// Sequences holding each block.
    refs: Vec<u32>,
    /// The prefix each published block holds.
    prefix_of: Vec<Option<Prefix>>,
    published: HashMap<Prefix, u32>,
    /// Block copies the cache tensors still owe, `(from, to)`, made before the next step.
    copies: Vec<(u32, u32)>,
    total: usize,
    block_size: usize,
}

impl BlockPool {
    pub fn new(total: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "a block holds at least one token");
        BlockPool {
            // Reversed, so blocks are handed out from 0 up (easier to read in tests and dumps).
            free: (0..total as u32).rev().collect(),
            idle: LinkedHashSet::new(),
            refs: vec![0; total],
            prefix_of: vec![None; total],
            published: HashMap::new(),
            copies: Vec::new(),
            total,
            block_size,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Blocks that can be handed out: the free ones and the idle ones (which are then forgotten).
    pub fn free(&self) -> usize {
        self.free.len() + self.idle.len()
    }

    /// Blocks that can be handed out without forgetting a prefix.
    pub fn unused(&self) -> usize {
        self.free.len()
    }

    /// Blocks nobody holds that keep a prefix for a later prompt.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// Add blocks `total..new_total` (the cache tensors have grown).
    pub fn grow(&mut self, new_total: usize) {
        if new_total <= self.total {
            return;
        }
        // Below the free blocks already there, which are handed out first.
        let fresh: Vec<u32> = (self.total as u32..new_total as u32).rev().collect();
        self.free.splice(0..0, fresh);
        self.refs.resize(new_total, 0);
        self.prefix_of.resize(new_total, None);
        self.total = new_total;
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// The copies owed to the cache tensors, `(from, to)`, in order.
    pub fn take_copies(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.copies)
    }

    /// How many sequences hold `block`.
    pub fn holders(&self, block: u32) -> u32 {
        self.refs[block as usize]
    }

    /// The published block holding `prefix`, if any.
    pub fn find(&self, prefix: &Prefix) -> Option<u32> {
        self.published.get(prefix).copied()
    }

    /// A block for a sequence to write into: a free one, else the least recently used idle one.
    pub(super) fn take(&mut self) -> Option<u32> {
        let block = match self.free.pop() {
            Some(block) => block,
            None => {
                let block = self.idle.pop_front()?;
                self.unpublish(block);
                block
            }
        };
        self.refs[block as usize] = 1;
        Some(block)
    }

    /// One more sequence holds `block`.
    pub(super) fn hold(&mut self, block: u32) {
        if self.refs[block as usize] == 0 {
            self.idle.remove(&block);
        }
        self.refs[block as usize] += 1;
    }

    /// One sequence lets go of `block`; the last one leaves it idle if it holds a published
    /// prefix (most recently used), free otherwise.
    pub(super) fn let_go(&mut self, block: u32) {
        let refs = &mut self.refs[block as usize];
        debug_assert!(*refs > 0, "block {block} let go more often than held");
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            match self.prefix_of[block as usize] {
                Some(_) => {
                    self.idle.insert(block);
                }
                None => self.free.push(block),
            }
        }
    }

    /// Publish a full block under its prefix, unless another block already holds it.
    pub(super) fn publish(&mut self, block: u32, prefix: Prefix) {
        if self.prefix_of[block as usize].is_none() && !self.published.contains_key(&prefix) {
            self.published.insert(prefix, block);
            self.prefix_of[block as usize] = Some(prefix);
        }
    }

    /// `block` is about to be written over: it no longer holds its prefix.
    pub(super) fn unpublish(&mut self, block: u32) {
        if let Some(prefix) = self.prefix_of[block as usize].take() {
            self.published.remove(&prefix);
        }
    }

    /// `to` (just taken) gets a copy of `from`'s contents before the next step.
    pub(super) fn owe_copy(&mut self, from: u32, to: u32) {
        self.copies.push((from, to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_digest_depends_on_every_token_before_it() {
        let a = extend_prefix(None, &[1, 2]);
        assert_eq!(a, extend_prefix(None, &[1, 2]));
        assert_ne!(a, extend_prefix(None, &[2, 1]));
        assert_ne!(extend_prefix(Some(&a), &[3, 4]), extend_prefix(Some(&extend_prefix(None, &[1, 9])), &[3, 4]));
    }

    #[test]
    fn the_last_holder_leaves_a_published_block_idle_and_others_free() {
        let mut pool = BlockPool::new(3, 2);
        let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
        assert_eq!((a, b, pool.free()), (0, 1, 1));
        pool.publish(a, [7; 16]);
        pool.hold(a);
        pool.let_go(a);
        assert_eq!((pool.holders(a), pool.idle()), (1, 0));
        pool.let_go(a);
        pool.let_go(b);
        assert_eq!((pool.idle(), pool.unused(), pool.free()), (1, 2, 3));
        assert_eq!(pool.find(&[7; 16]), Some(a));
        // Held again, it leaves the idle list.
        pool.hold(a);
        assert_eq!((pool.idle(), pool.free()), (0, 2));
    }

    #[test]
    fn free_blocks_go_first_then_the_least_recently_used_idle_one_forgotten() {
        let mut pool = BlockPool::new(3, 1);
        let blocks: Vec<u32> = (0..3).map(|_| pool.take().unwrap()).collect();
        for (i, &block) in blocks.iter().enumerate() {
            pool.publish(block, [i as u8; 16]);
        }
        pool.let_go(blocks[1]);
        pool.let_go(blocks[0]);
        assert_eq!(pool.take(), Some(blocks[1]), "the first to go idle is the first taken");
        assert_eq!(pool.find(&[1; 16]), None, "and its prefix is forgotten");
        assert_eq!(pool.find(&[0; 16]), Some(blocks[0]));
        assert_eq!(pool.take(), Some(blocks[0]));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn one_prefix_is_published_by_one_block() {
        let mut pool = BlockPool::new(2, 1);
        let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
        pool.publish(a, [1; 16]);
        pool.publish(b, [1; 16]);
        assert_eq!(pool.find(&[1; 16]), Some(a));
        pool.let_go(b);
        assert_eq!((pool.unused(), pool.idle()), (1, 0), "the duplicate is simply free");
    }

    #[test]
    fn a_grown_pool_hands_out_the_old_free_blocks_first() {
        let mut pool = BlockPool::new(2, 1);
        assert_eq!(pool.take(), Some(0));
        pool.grow(4);
        assert_eq!((pool.total(), pool.free()), (4, 3));
        assert_eq!([pool.take(), pool.take(), pool.take(), pool.take()], [Some(1), Some(2), Some(3), None]);
    }
}
