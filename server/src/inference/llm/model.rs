//! The compiled chat model: an OpenVINO export of a stateful decoder (DeepSeek-R1-Distill-Qwen).
//! Inputs `input_ids`, `attention_mask`, `position_ids`, `beam_idx`; output `logits`. Each
//! conversation runs on its own `InferRequest`, whose state is that conversation's KV cache.

use super::ir;
use crate::inference::{
    configure_device, input_type, int_tensor, require_files,
    weights::{read_ir, Placement},
    InferenceError, OvContext,
};
use openvino::{CompiledModel, Core, DeviceType, ElementType, InferRequest};
use std::path::{Path, PathBuf};

/// Files an exported chat model folder must hold.
pub const REQUIRED_FILES: &[&str] =
    &["openvino_model.xml", "openvino_model.bin", "tokenizer.json", "tokenizer_config.json", "config.json"];

/// How to compile the model. The defaults are what measured best on CPU (see bench/).
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub device: String,
    /// OpenVINO's compiled-model cache (makes the second start fast) and the rewritten IR.
    pub cache_dir: Option<PathBuf>,
    /// Compute logits for the last position only (see `ir`).
    pub slice_logits: bool,
    /// Extra device properties, e.g. `PERFORMANCE_HINT=LATENCY`, `KV_CACHE_PRECISION=u8`.
    pub properties: Vec<(String, String)>,
    /// Weights read into memory (faster decoding) or mapped from the file. The stateful graph
    /// maps them whenever `cache_dir` is set: its cached blob decodes as fast either way.
    pub weights: Placement,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            device: "CPU".into(),
            cache_dir: None,
            slice_logits: true,
            properties: vec![
                ("PERFORMANCE_HINT".into(), "LATENCY".into()),
                ("KV_CACHE_PRECISION".into(), "u8".into()),
                ("DYNAMIC_QUANTIZATION_GROUP_SIZE".into(), "32".into()),
            ],
            weights: Placement::default(),
        }
    }
}

impl CompileOptions {
    /// Bytes per cached key or value element, for KV memory estimates.
    pub fn kv_bytes_per_value(&self) -> usize {
        match self.properties.iter().find(|(k, _)| k == "KV_CACHE_PRECISION").map(|(_, v)| v.as_str()) {
            Some("u8") | Some("i8") => 1,
            Some("f32") => 4,
            _ => 2,
        }
    }
}

pub struct LlmModel {
    pub dir: PathBuf,
    compiled: CompiledModel,
    /// Element types of the integer inputs, which differ between exports.
    types: [ElementType; 4],
    /// Whether the loaded graph computes logits for the last position only.
    pub sliced_logits: bool,
}

const INPUTS: [&str; 4] = ["input_ids", "attention_mask", "position_ids", "beam_idx"];

impl LlmModel {
    pub fn load(core: &mut Core, dir: &Path, options: &CompileOptions) -> Result<Self, InferenceError> {
        require_files(dir, REQUIRED_FILES)?;
        let device = DeviceType::from(options.device.as_str());
        configure_device(core, &options.device, &options.properties, options.cache_dir.as_deref())?;
        let xml = dir.join("openvino_model.xml");
        let bin = dir.join("openvino_model.bin");
        let (graph, sliced_logits) =
            match options.slice_logits.then(|| sliced_ir(&xml, &bin, options.cache_dir.as_deref())) {
                Some(Ok(path)) => (path, true),
                Some(Err(reason)) => {
                    tracing::warn!(model = %dir.display(), %reason, "computing logits for every position");
                    (xml.clone(), false)
                }
                None => (xml.clone(), false),
            };
        // With OpenVINO's cache the compiled model is imported from its blob from the second start
        // on, and decodes as fast with either placement (measured: 68-71 ms/token both ways);
        // reading the weights into memory would only make every start 0.6 s slower.
        let placement = if options.cache_dir.is_some() { Placement::Mapped } else { options.weights };
        let model = read_ir(core, &graph, &bin, placement)?;
        let compiled =
            core.compile_model(&model, device).ov(|| format!("compiling {} for {}", xml.display(), options.device))?;
        let mut types = [ElementType::I64; 4];
        for (slot, name) in types.iter_mut().zip(INPUTS) {
            *slot = input_type(&compiled, name)?;
        }
        Ok(LlmModel { dir: dir.to_path_buf(), compiled, types, sliced_logits })
    }

    /// A request with an empty KV cache: one per conversation.
    pub fn new_request(&mut self) -> Result<InferRequest, InferenceError> {
        self.compiled.create_infer_request().ov(|| "creating an inference request".into())
    }

    /// Run `ids` (positions `first_position..`) on `request`, appending them to its KV cache, and
    /// return the logits of the last one. `attention_mask` covers every cache slot plus `ids`.
    pub fn forward(
        &self,
        request: &mut InferRequest,
        ids: &[u32],
        first_position: usize,
        attention_mask: &[i64],
    ) -> Result<Vec<f32>, InferenceError> {
        let n = ids.len() as i64;
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let positions: Vec<i64> = (first_position as i64..first_position as i64 + n).collect();
        let inputs: [(&[i64], Vec<i64>); 4] = [
            (&ids, vec![1, n]),
            (attention_mask, vec![1, attention_mask.len() as i64]),
            (&positions, vec![1, n]),
            (&[0], vec![1]),
        ];
        for ((name, element), (data, shape)) in INPUTS.iter().zip(self.types).zip(inputs) {
            let tensor = int_tensor(element, &shape, data)?;
            request.set_tensor(name, &tensor).ov(|| format!("setting {name}"))?;
        }
        request.infer().ov(|| "running the model".into())?;
        let logits = request.get_tensor("logits").ov(|| "reading logits".into())?;
        let dims = logits.get_shape().ov(|| "reading the logits shape".into())?.get_dimensions().to_vec();
        let vocab = *dims.last().unwrap_or(&0) as usize;
        let data = logits.get_data::<f32>().ov(|| "reading logits".into())?;
        if vocab == 0 || data.len() < vocab {
            return Err(InferenceError::BadModel(format!("unexpected logits shape {dims:?}")));
        }
        Ok(data[data.len() - vocab..].to_vec())
    }

    /// Run `ids` through a fresh request (an empty KV cache) and return the last logits.
    pub fn prefill_last_logits(&mut self, ids: &[i64]) -> Result<Vec<f32>, InferenceError> {
        if ids.is_empty() {
            return Err(InferenceError::BadModel("a prompt needs at least one token".into()));
        }
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        let mut request = self.new_request()?;
        self.forward(&mut request, &ids, 0, &vec![1; ids.len()])
    }
}

/// The IR rewritten to compute logits for the last position only, cached beside OpenVINO's own
/// cache under a name derived from the original XML, so it is made once per model.
fn sliced_ir(xml: &Path, bin: &Path, cache_dir: Option<&Path>) -> Result<PathBuf, String> {
    use std::{
        hash::{Hash, Hasher},
        os::unix::fs::FileExt,
    };
    let text = std::fs::read_to_string(xml).map_err(|e| format!("{}: {e}", xml.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (ir::REWRITE_VERSION, &text, std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0)).hash(&mut hasher);
    let dir = cache_dir.map(|c| c.join("ir")).unwrap_or_else(|| std::env::temp_dir().join("duet-ir"));
    let path = dir.join(format!("{:016x}.xml", hasher.finish()));
    if path.is_file() {
        return Ok(path);
    }
    let weights = std::fs::File::open(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let read = |offset: u64, len: usize| {
        let mut buf = vec![0; len];
        weights.read_exact_at(&mut buf, offset).ok().map(|_| buf)
    };
    let rewritten = ir::slice_logits_to_last_token(&text, read).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Write then rename, so a crash never leaves half a file under the final name.
    let tmp = path.with_extension(format!("xml.{}.tmp", std::process::id()));
    std::fs::write(&tmp, rewritten).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
