//! The two ways to run the chat model, behind one face for the engine.
//!
//! - **Paged** (the default when available): SDPAToPagedAttention through our shim; one request,
//!   a KV cache of blocks we own (`paged/`). A conversation's cache is a list of blocks, cut
//!   anywhere, its memory shared with every other conversation.
//! - **Stateful**: the exported graph as it is; one request per conversation, whose state is its
//!   KV cache; a diverged prompt masks stale entries (`kv`), which stay until the request goes.

use super::{
    kv::KvLayout,
    model::{CompileOptions, LlmModel},
    paged::{
        sequence::{Plan, Sequence},
        Feed, PagedModel,
    },
};
use crate::inference::InferenceError;
use openvino::{Core, InferRequest};
use std::path::Path;

/// Which attention the engine compiles the model with (`LLM_ATTENTION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// Paged when this build has the shim and the model converts; stateful otherwise.
    #[default]
    Auto,
    Paged,
    Stateful,
}

/// What the paged block pool holds, in tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvTokens {
    pub used: usize,
    pub idle: usize,
    pub allocated: usize,
}

pub enum Backend {
    Stateful(LlmModel),
    // Boxed: the block pool's bookkeeping makes it much larger than the stateful variant.
    Paged(Box<PagedModel>),
}

/// One conversation's KV cache.
pub enum Cache {
    Stateful { request: InferRequest, layout: KvLayout },
    Paged(Sequence),
}

impl Backend {
    /// Load the model; `kv_bytes` bounds the paged block pool, `min_tokens` is the longest
    /// sequence it must always be able to hold.
    pub fn load(
        core: &mut Core,
        dir: &Path,
        attention: Attention,
        options: &CompileOptions,
        kv_bytes: usize,
        min_tokens: usize,
    ) -> Result<Backend, InferenceError> {
        if attention != Attention::Stateful {
            match PagedModel::load(core, dir, options, kv_bytes, min_tokens) {
                Ok(model) => return Ok(Backend::Paged(Box::new(model))),
                Err(err) if attention == Attention::Auto => {
                    tracing::warn!(error = %err, "paged attention unavailable; using the stateful model")
                }
                Err(err) => return Err(err),
            }
        }
        Ok(Backend::Stateful(LlmModel::load(core, dir, options)?))
    }

    pub fn attention(&self) -> Attention {
        match self {
            Backend::Stateful(_) => Attention::Stateful,
            Backend::Paged(_) => Attention::Paged,
        }
    }

    /// Whether logits are computed for the last position only.
    pub fn sliced_logits(&self) -> bool {
        match self {
            Backend::Stateful(model) => model.sliced_logits,
            Backend::Paged(_) => true,
        }
    }

    pub fn new_cache(&mut self) -> Result<Cache, InferenceError> {
        Ok(match self {
            Backend::Stateful(model) => Cache::Stateful { request: model.new_request()?, layout: KvLayout::new() },
            Backend::Paged(_) => Cache::Paged(Sequence::new()),
        })
    }

    /// Keep what `cache` holds of `prompt` (paged: or what other conversations' blocks hold) and
    /// say what is left to run.
    pub fn plan(&mut self, cache: &mut Cache, prompt: &[u32], share: bool) -> Plan {
        match (self, cache) {
            (_, Cache::Stateful { layout, .. }) => {
                let plan = layout.plan(prompt);
                Plan { reused: plan.first_position, shared: 0, feed: plan.feed }
            }
            (Backend::Paged(model), Cache::Paged(seq)) => match share {
                true => seq.plan(prompt, &mut model.pool),
                false => seq.plan_own(prompt, &mut model.pool),
            },
            (Backend::Stateful(_), Cache::Paged(_)) => unreachable!("caches come from their backend"),
        }
    }

    /// Run `ids` at positions `position..` and return the last one's logits. A paged step that
    /// finds no free block fails with [`InferenceError::CacheFull`] (the engine reserves first,
    /// evicting idle conversations, so it does not get here with a full pool).
    pub fn forward(&mut self, cache: &mut Cache, ids: &[u32], position: usize) -> Result<Vec<f32>, InferenceError> {
        if matches!(cache, Cache::Paged(_)) {
            self.reserve(cache, ids.len())?;
            let rows = self.forward_batch(&mut [(cache, ids, position)])?;
            return Ok(rows.into_iter().next().expect("one row per sequence"));
        }
        let (Backend::Stateful(model), Cache::Stateful { request, layout }) = (self, cache) else {
            unreachable!("caches come from their backend")
        };
        let mask = layout.attention_mask(ids.len());
        let logits = model.forward(request, ids, position, &mask)?;
        layout.append(ids);
        Ok(logits)
    }

    /// Paged attention: tokens in the blocks conversations hold, in idle blocks kept for the
    /// prefixes they hold, and room as allocated; all 0 for the stateful graph, whose caches
    /// live in its requests.
    pub fn kv_tokens(&self) -> KvTokens {
        match self {
            Backend::Paged(model) => {
                let (pool, size) = (&model.pool, model.pool.block_size());
                KvTokens {
                    used: (pool.total() - pool.free()) * size,
                    idle: pool.idle() * size,
                    allocated: pool.total() * size,
                }
            }
            Backend::Stateful(_) => KvTokens::default(),
        }
    }

    /// Whether one step can run several sequences (paged attention).
    pub fn batches(&self) -> bool {
        matches!(self, Backend::Paged(_))
    }

    /// Make room for `more` tokens in `cache` (paged: blocks; stateful: nothing to do). Fails
    /// with [`InferenceError::CacheFull`] at the budget.
    pub fn reserve(&mut self, cache: &mut Cache, more: usize) -> Result<(), InferenceError> {
        match (self, cache) {
            (Backend::Paged(model), Cache::Paged(seq)) => model.reserve(seq, more),
            _ => Ok(()),
        }
    }

    /// One step for several paged sequences, each `(cache, ids, position)` with its blocks
    /// reserved; returns each one's last logits, in order.
    pub fn forward_batch(
        &mut self,
        items: &mut [(&mut Cache, &[u32], usize)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let Backend::Paged(model) = self else {
            return items.iter_mut().map(|(cache, ids, position)| self.forward(cache, ids, *position)).collect();
        };
        let mut feeds = Vec::with_capacity(items.len());
        for (cache, ids, position) in items.iter() {
            let Cache::Paged(seq) = &**cache else { unreachable!("caches come from their backend") };
            debug_assert_eq!(seq.tokens().len(), *position, "positions follow the cached tokens");
            feeds.push(Feed { past: *position, ids, blocks: seq.blocks() });
        }
        let logits = model.forward(&feeds)?;
        for (cache, ids, _) in items.iter_mut() {
            if let Cache::Paged(seq) = &mut **cache {
                seq.append(ids, &mut model.pool);
            }
        }
        Ok(logits)
    }

    /// Give a cache's memory back (paged blocks return to the pool; a stateful request is freed
    /// when dropped).
    pub fn release(&mut self, cache: Cache) {
        if let (Backend::Paged(model), Cache::Paged(mut seq)) = (self, cache) {
            seq.release(&mut model.pool);
        }
    }
}

impl Cache {
    /// Cache slots it holds (masked ones included): what it costs in memory.
    pub fn slots(&self) -> usize {
        match self {
            Cache::Stateful { layout, .. } => layout.physical_len(),
            Cache::Paged(seq) => seq.tokens().len(),
        }
    }

    /// Whether running on this cache would cost more than starting over (a stateful cache
    /// that is mostly masked holes).
    pub fn worth_keeping(&self) -> bool {
        match self {
            Cache::Stateful { layout, .. } => layout.holes() <= layout.visible().len().max(256),
            Cache::Paged(_) => true,
        }
    }
}
