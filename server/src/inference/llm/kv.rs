//! Where each token of a conversation sits in its request's KV cache.
//!
//! OpenVINO's C API cannot trim a stateful request's KV cache. When a conversation's new prompt
//! diverges from what is cached — the template drops the previous reply's reasoning, a message was
//! edited, a reply is regenerated — the cached entries past the common prefix stay in the cache but
//! are masked out (attention_mask = 0), and the new tokens get the position ids they would have in a
//! fresh run. The model then attends to exactly the tokens of a cold run, at the same positions.

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KvLayout {
    /// The tokens the model currently attends to, in order (the logical context).
    visible: Vec<u32>,
    /// Cache slot of each visible token.
    slots: Vec<usize>,
    /// One entry per cache slot: 1 attended, 0 masked out.
    mask: Vec<i64>,
}

/// What to run through the model for a new prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Prompt tokens already in the cache, reused as they are.
    pub reused: usize,
    /// Position id of the first token to feed (`reused`: positions count visible tokens only).
    pub first_position: usize,
    /// Prompt tokens still to run (never empty: the last prompt token must be run to get logits).
    pub feed: Vec<u32>,
}

impl KvLayout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepare the cache for `prompt` (non-empty): keep the longest cached prefix, mask the rest.
    pub fn plan(&mut self, prompt: &[u32]) -> Plan {
        assert!(!prompt.is_empty(), "a prompt has at least one token");
        let common = self.visible.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let keep = common.min(prompt.len() - 1);
        for &slot in &self.slots[keep..] {
            self.mask[slot] = 0;
        }
        self.visible.truncate(keep);
        self.slots.truncate(keep);
        Plan { reused: keep, first_position: keep, feed: prompt[keep..].to_vec() }
    }

    /// The attention mask for a step that feeds `new` tokens: every cache slot plus the new ones.
    pub fn attention_mask(&self, new: usize) -> Vec<i64> {
        let mut mask = Vec::with_capacity(self.mask.len() + new);
        mask.extend_from_slice(&self.mask);
        mask.resize(self.mask.len() + new, 1);
        mask
    }

    /// Record tokens that have just been run through the model.
    pub fn append(&mut self, tokens: &[u32]) {
        let start = self.mask.len();
        self.visible.extend_from_slice(tokens);
        self.slots.extend(start..start + tokens.len());
        self.mask.resize(start + tokens.len(), 1);
    }

    pub fn visible(&self) -> &[u32] {
        &self.visible
    }

    /// Cache slots in use, masked or not: what the cache costs in memory and attention time.
    pub fn physical_len(&self) -> usize {
        self.mask.len()
    }

    pub fn holes(&self) -> usize {
        self.mask.len() - self.visible.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_up_reuses_the_prefix_and_masks_the_stale_reply() {
        let mut kv = KvLayout::new();
        // Turn 1: prompt [1 2 3] then generated [7 8] (reasoning + answer; 9 = eos never run).
        assert_eq!(kv.plan(&[1, 2, 3]), Plan { reused: 0, first_position: 0, feed: vec![1, 2, 3] });
        kv.append(&[1, 2, 3]);
        kv.append(&[7]);
        kv.append(&[8]);
        assert_eq!(kv.visible(), &[1, 2, 3, 7, 8]);
        // Turn 2's rendering keeps only [8] of the reply (reasoning 7 dropped), then adds [4 5].
        let plan = kv.plan(&[1, 2, 3, 8, 4, 5]);
        assert_eq!(plan, Plan { reused: 3, first_position: 3, feed: vec![8, 4, 5] });
        assert_eq!(kv.attention_mask(3), vec![1, 1, 1, 0, 0, 1, 1, 1]);
        kv.append(&plan.feed);
        assert_eq!(kv.visible(), &[1, 2, 3, 8, 4, 5]);
        assert_eq!((kv.physical_len(), kv.holes()), (8, 2));
    }

    #[test]
    fn regenerating_the_same_prompt_reruns_its_last_token() {
        let mut kv = KvLayout::new();
        kv.plan(&[1, 2, 3]);
        kv.append(&[1, 2, 3, 7, 8]);
        let plan = kv.plan(&[1, 2, 3]);
        assert_eq!(plan, Plan { reused: 2, first_position: 2, feed: vec![3] });
        assert_eq!(kv.attention_mask(1), vec![1, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn an_edit_early_in_the_conversation_masks_everything_after_it() {
        let mut kv = KvLayout::new();
        kv.plan(&[1, 2, 3, 4]);
        kv.append(&[1, 2, 3, 4]);
        let plan = kv.plan(&[1, 9, 9]);
        assert_eq!(plan, Plan { reused: 1, first_position: 1, feed: vec![9, 9] });
        kv.append(&plan.feed);
        assert_eq!(kv.attention_mask(0), vec![1, 0, 0, 0, 1, 1]);
        // Holes stay holes when the next turn masks more.
        let plan = kv.plan(&[1, 9, 5]);
        assert_eq!(plan.feed, vec![5]);
        assert_eq!(kv.attention_mask(1), vec![1, 0, 0, 0, 1, 0, 1]);
    }
}
