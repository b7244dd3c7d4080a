//! The chat model compiled for paged attention: one inference request for every conversation,
//! whose KV cache is a pool of blocks in tensors we allocate (one key and one value tensor per
//! layer). A step runs any number of sequences at once, each with its own new tokens, cached
//! length and block list, and returns one row of logits per sequence.

use super::{
    blocks::BlockPool,
    sequence::{OutOfBlocks, Sequence},
    shim,
};
use crate::inference::{
    configure_device, input_type, int_tensor, llm::model::CompileOptions, llm::REQUIRED_FILES, require_files,
    InferenceError, OvContext,
};
use openvino::{CompiledModel, Core, DeviceType, ElementType, InferRequest, Tensor};
use std::path::Path;

/// One sequence's part of a step.
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    /// Tokens already in its cache blocks (the position of `ids[0]`).
    pub past: usize,
    pub ids: &'a [u32],
    /// Its blocks, enough for `past + ids.len()` tokens.
    pub blocks: &'a [u32],
}

pub struct PagedModel {
    // Kept alive for `request`.
    _compiled: CompiledModel,
    request: InferRequest,
    /// Element types of `input_ids` and `position_ids`, which differ between exports.
    id_types: [ElementType; 2],
    pub pool: BlockPool,
    /// The cache tensors, grown on demand up to `max_blocks`.
    caches: Vec<(CacheInput, Option<Tensor>)>,
    max_blocks: usize,
}

/// Blocks allocated at load; the pool doubles from there as conversations need more, so a
/// server that chats a little does not hold its whole cache budget in memory.
const INITIAL_TOKENS: usize = 2048;

impl PagedModel {
    /// Compile the model at `dir` for paged attention with a cache of up to `cache_bytes`
    /// (rounded down to whole blocks, but always room for one sequence of `min_tokens`).
    pub fn load(
        core: &mut Core,
        dir: &Path,
        options: &CompileOptions,
        cache_bytes: usize,
        min_tokens: usize,
    ) -> Result<Self, InferenceError> {
        require_files(dir, REQUIRED_FILES)?;
        // No CACHE_DIR here: the converted model is hashed and imported from the cache more
        // slowly than it compiles (measured on the 1.5B model: 1.7-2.2 s against 0.96 s, and 225
        // MiB more at peak), since its weights are already in memory, mapped from the IR.
        configure_device(core, &options.device, &options.properties, None)?;
        let xml = dir.join("openvino_model.xml");
        let bin = dir.join("openvino_model.bin");
        let started = std::time::Instant::now();
        let mut model = crate::inference::weights::read_ir(core, &xml, &bin, options.weights)?;
        let read_ms = started.elapsed().as_millis();
        shim::make_paged(&mut model)?;
        let convert_ms = started.elapsed().as_millis() - read_ms;
        let mut compiled = core
            .compile_model(&model, DeviceType::from(options.device.as_str()))
            .ov(|| format!("compiling {} for {} (paged attention)", xml.display(), options.device))?;
        let compile_ms = started.elapsed().as_millis() - read_ms - convert_ms;
        tracing::debug!(model = %dir.display(), read_ms, convert_ms, compile_ms, "paged model compiled");
        let id_types = [input_type(&compiled, "input_ids")?, input_type(&compiled, "position_ids")?];
        let caches = cache_inputs(&compiled)?;
        // The value tensor's third axis is the block size; the key tensor may carry extra rows
        // (per-channel quantisation parameters), so it is not read from there.
        let block_size = caches
            .iter()
            .find(|c| c.name.starts_with("value_cache."))
            .map(|c| c.dims[1])
            .ok_or_else(|| InferenceError::BadModel("no value_cache input after conversion".into()))?;
        let block_bytes: usize = caches.iter().map(|c| c.bytes_per_block).sum();
        let max_blocks = (cache_bytes / block_bytes.max(1)).max(min_tokens.div_ceil(block_size));
        let blocks = INITIAL_TOKENS.div_ceil(block_size).min(max_blocks);
        let request = compiled.create_infer_request().ov(|| "creating an inference request".into())?;
        let mut model = PagedModel {
            _compiled: compiled,
            request,
            id_types,
            pool: BlockPool::new(0, block_size),
            caches: caches.into_iter().map(|c| (c, None)).collect(),
            max_blocks,
        };
        model.grow(blocks)?;
        tracing::debug!(
            model = %dir.display(), blocks, max_blocks, block_size, block_bytes,
            max_cache_mib = max_blocks * block_bytes / (1 << 20), "paged KV cache allocated"
        );
        Ok(model)
    }

    /// Blocks for `more` tokens after `seq`'s, growing the cache tensors before forgetting idle
    /// prefixes; makes the block copies a shared block's writer needs. Fails with `CacheFull` at
    /// the budget; the caller can free idle sequences and retry.
    pub fn reserve(&mut self, seq: &mut Sequence, more: usize) -> Result<(), InferenceError> {
        let short = seq.blocks_needed(more, &self.pool).saturating_sub(self.pool.unused());
        let total = self.pool.total();
        if short > 0 && total < self.max_blocks {
            self.grow((total * 2).max(total + short).min(self.max_blocks))?;
        }
        seq.reserve(more, &mut self.pool).map_err(|OutOfBlocks { needed, free }| {
            InferenceError::CacheFull(format!(
                "{needed} more KV blocks needed, {free} free of {} (LLM_KV_CACHE_MB)",
                self.pool.total()
            ))
        })?;
        self.make_copies()
    }

    /// Copy blocks the pool owes (a block is contiguous: the leading axis of every cache tensor).
    fn make_copies(&mut self) -> Result<(), InferenceError> {
        for (from, to) in self.pool.take_copies() {
            for (cache, tensor) in &mut self.caches {
                let tensor = tensor.as_mut().expect("cache tensors are allocated at load");
                let data = tensor.get_raw_data_mut().ov(|| format!("copying a block of {}", cache.name))?;
                let size = cache.bytes_per_block;
                data.copy_within(from as usize * size..(from as usize + 1) * size, to as usize * size);
            }
        }
        Ok(())
    }

    /// Reallocate every cache tensor with `blocks` blocks, keeping the contents of the old ones
    /// (blocks are the leading axis, so they are a prefix of the new tensor).
    fn grow(&mut self, blocks: usize) -> Result<(), InferenceError> {
        for (cache, tensor) in &mut self.caches {
            let shape = [blocks as i64, cache.dims[0] as i64, cache.dims[1] as i64, cache.dims[2] as i64];
            let ctx = || format!("allocating {} {shape:?}", cache.name);
            let mut grown = Tensor::new(cache.element, &openvino::Shape::new(&shape).ov(ctx)?).ov(ctx)?;
            if let Some(old) = tensor {
                let old = old.get_raw_data().ov(ctx)?;
                grown.get_raw_data_mut().ov(ctx)?[..old.len()].copy_from_slice(old);
            }
            self.request.set_tensor(&cache.name, &grown).ov(|| format!("setting {}", cache.name))?;
            *tensor = Some(grown);
        }
        self.pool.grow(blocks);
        Ok(())
    }

    /// Run one step for `feeds` (each with at least one token) and return the logits of each
    /// one's last token, in order.
    pub fn forward(&mut self, feeds: &[Feed]) -> Result<Vec<Vec<f32>>, InferenceError> {
        if feeds.is_empty() || feeds.iter().any(|f| f.ids.is_empty()) {
            return Err(InferenceError::BadModel("a step needs at least one token per sequence".into()));
        }
        let block_size = self.pool.block_size();
        let (mut ids, mut positions, mut past_lens, mut begins, mut block_indices, mut block_begins, mut last) =
            (vec![], vec![], vec![], vec![0i64], vec![], vec![0i64], vec![]);
        let mut max_context = 0;
        for feed in feeds {
            let end = feed.past + feed.ids.len();
            if feed.blocks.len() * block_size < end {
                return Err(InferenceError::Generation(format!(
                    "{} blocks cannot hold {end} tokens",
                    feed.blocks.len()
                )));
            }
            ids.extend(feed.ids.iter().map(|&t| t as i64));
            positions.extend(feed.past as i64..end as i64);
            past_lens.push(feed.past as i64);
            begins.push(ids.len() as i64);
            let used = end.div_ceil(block_size);
            block_indices.extend(feed.blocks[..used].iter().map(|&b| b as i64));
            block_begins.push(block_indices.len() as i64);
            last.push(ids.len() as i64 - 1);
            max_context = max_context.max(end);
        }
        let (n, b) = (ids.len() as i64, feeds.len() as i64);
        let i32s = ElementType::I32;
        let inputs: [(&str, ElementType, Vec<i64>, Vec<i64>); 8] = [
            ("input_ids", self.id_types[0], vec![n], ids),
            ("position_ids", self.id_types[1], vec![n], positions),
            ("past_lens", i32s, vec![b], past_lens),
            ("subsequence_begins", i32s, vec![b + 1], begins),
            ("block_indices", i32s, vec![block_indices.len() as i64], block_indices),
            ("block_indices_begins", i32s, vec![b + 1], block_begins),
            ("max_context_len", i32s, vec![1], vec![max_context as i64]),
            ("logits_indices", ElementType::I64, vec![b], last),
        ];
        for (name, element, shape, data) in inputs {
            let tensor = int_tensor(element, &shape, &data)?;
            self.request.set_tensor(name, &tensor).ov(|| format!("setting {name}"))?;
        }
        self.request.infer().ov(|| "running the model".into())?;
        let logits = self.request.get_tensor("logits").ov(|| "reading logits".into())?;
        let data = logits.get_data::<f32>().ov(|| "reading logits".into())?;
        let vocab = data.len() / feeds.len();
        if vocab == 0 || data.len() != vocab * feeds.len() {
            return Err(InferenceError::BadModel(format!("{} logits for {} sequences", data.len(), feeds.len())));
        }
        Ok(data.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}

struct CacheInput {
    name: String,
    element: ElementType,
    /// The three axes after the block axis: heads, rows per block, values per row.
    dims: [usize; 3],
    bytes_per_block: usize,
}

/// The `key_cache.N` / `value_cache.N` inputs with the layout the device chose at compile time.
fn cache_inputs(compiled: &CompiledModel) -> Result<Vec<CacheInput>, InferenceError> {
    let count = compiled.get_input_size().ov(|| "counting inputs".into())?;
    let mut caches = vec![];
    for i in 0..count {
        let node = compiled.get_input_by_index(i).ov(|| format!("reading input {i}"))?;
        let name = node.get_name().ov(|| format!("naming input {i}"))?;
        if !(name.starts_with("key_cache.") || name.starts_with("value_cache.")) {
            continue;
        }
        let element = node.get_element_type().ov(|| format!("{name}: element type"))?;
        let shape = node.get_partial_shape().ov(|| format!("{name}: shape"))?;
        let dims: Vec<i64> = shape.get_dimensions().iter().map(|d| d.get_max()).collect();
        let static_tail = shape.get_dimensions().iter().skip(1).all(|d| !d.is_dynamic());
        if dims.len() != 4 || !static_tail {
            return Err(InferenceError::BadModel(format!("{name}: unexpected cache layout {dims:?}")));
        }
        let dims = [dims[1] as usize, dims[2] as usize, dims[3] as usize];
        let bytes_per_block = dims.iter().product::<usize>() * element_bytes(element)?;
        caches.push(CacheInput { name, element, dims, bytes_per_block });
    }
    Ok(caches)
}

fn element_bytes(element: ElementType) -> Result<usize, InferenceError> {
    Ok(match element {
        ElementType::U8 | ElementType::I8 => 1,
        ElementType::F16 | ElementType::Bf16 => 2,
        ElementType::F32 => 4,
        other => return Err(InferenceError::BadModel(format!("unsupported KV cache type {other:?}"))),
    })
}
