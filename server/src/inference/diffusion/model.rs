//! The compiled parts of a Stable Diffusion folder. The UNet and VAE decoder are reshaped to
//! static shapes for each requested size (OpenVINO's CPU kernels are faster on static shapes)
//! and kept in a small most-recently-used cache of compiled sizes.

use super::{
    files::SdFiles,
    parts::{self, PartWeights},
    safety::SafetyChecker,
    scheduler::SchedulerKind,
    tokenizer::ClipTokenizer,
    unpack::UnetLinear,
};
use crate::inference::{configure_device, f32_tensor, input_type, int_tensor, InferenceError, OvContext};
use openvino::{CompiledModel, Core, DeviceType, InferRequest, Model, PartialShape};
use std::path::PathBuf;

/// How to compile the pipeline.
#[derive(Clone, Debug)]
pub struct SdCompileOptions {
    pub device: String,
    /// OpenVINO's compiled-model cache: the second compile of a size loads in a fraction.
    pub cache_dir: Option<PathBuf>,
    /// Compile for the requested size instead of keeping dynamic shapes.
    pub static_shapes: bool,
    /// How many compiled sizes to keep (each holds its own UNet and VAE).
    pub compiled_sizes: usize,
    /// Run the folder's safety checker (when it has one) and black out flagged images.
    pub safety_checker: bool,
    /// Which UNet linear layers get their int8 weights unpacked to f32 at load (see `unpack`).
    pub unet_linear: UnetLinear,
    pub properties: Vec<(String, String)>,
    /// What the pictures' recipes record of how they were drawn (`inference::cpu::drawn_at`).
    pub drawn_at: String,
}

impl Default for SdCompileOptions {
    fn default() -> Self {
        SdCompileOptions {
            device: "CPU".into(),
            cache_dir: None,
            static_shapes: true,
            compiled_sizes: 2,
            safety_checker: false,
            unet_linear: UnetLinear::default(),
            // f32 throughout: CPUs with AVX-512 BF16 or AMX otherwise compute in bf16 and quantize
            // activations to int8 on the fly, and the same seed would give a different picture
            // there than on an AVX2 machine (measured: text encoder output off by 0.06 against the
            // reference until both were pinned). The server picks per CPU class (`inference::cpu`).
            properties: vec![
                ("PERFORMANCE_HINT".into(), "LATENCY".into()),
                ("INFERENCE_PRECISION_HINT".into(), "f32".into()),
                ("DYNAMIC_QUANTIZATION_GROUP_SIZE".into(), "0".into()),
            ],
            drawn_at: "f32".into(),
        }
    }
}

/// UNet and VAE decoder compiled for one (width, height, batch).
struct SizedModels {
    key: (u32, u32, usize),
    /// Kept for its requests, which allocate their buffers once.
    _unet: CompiledModel,
    _vae: CompiledModel,
    unet: InferRequest,
    vae: InferRequest,
    timestep_type: openvino::ElementType,
    /// The mappings the UNet and VAE were compiled from, unless imported from OpenVINO's cache:
    /// declared last, so dropped after the compiled models that may read them.
    _weights: Vec<PartWeights>,
}

pub struct SdModel {
    pub files: SdFiles,
    pub tokenizer: ClipTokenizer,
    core: Core,
    options: SdCompileOptions,
    _text_encoder: CompiledModel,
    text_request: InferRequest,
    text_input_type: openvino::ElementType,
    /// Most recently used last.
    sized: Vec<SizedModels>,
    /// Loaded only when switched on and present.
    pub(super) safety: Option<SafetyChecker>,
    /// The mapping the text encoder was compiled from (see `SizedModels::_weights`).
    _text_weights: Option<PartWeights>,
}

/// Timings of the parts of one image, for benchmarks and logs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartTimes {
    pub compile_ms: f64,
    pub text_encode_ms: f64,
    pub unet_ms: Vec<f64>,
    pub vae_ms: f64,
    /// Encoding the PNG with its recipe chunks.
    pub png_ms: f64,
}

impl SdModel {
    /// How this model was compiled.
    pub fn options(&self) -> &SdCompileOptions {
        &self.options
    }
}

impl SdModel {
    pub fn load(dir: &std::path::Path, options: &SdCompileOptions) -> Result<Self, InferenceError> {
        let files = SdFiles::open(dir)?;
        let tokenizer =
            ClipTokenizer::load(&dir.join("tokenizer")).map_err(|e| InferenceError::BadModel(e.to_string()))?;
        let mut core = crate::inference::new_core()?;
        configure_device(&mut core, &options.device, &options.properties, options.cache_dir.as_deref())?;
        let (mut text_graph, text_weights) = parts::read(&mut core, dir, "text_encoder")?;
        if options.static_shapes {
            let shape = static_shape(&[1, super::tokenizer::MAX_LENGTH as i64])?;
            text_graph.reshape(&[("input_ids", &shape)]).ov(|| "reshaping the text encoder".into())?;
        }
        let mut text_encoder = core
            .compile_model(&text_graph, DeviceType::from(options.device.as_str()))
            .ov(|| "compiling text_encoder".into())?;
        drop(text_graph);
        let text_weights = parts::settle(text_weights, &text_encoder, options.static_shapes);
        let text_input_type = input_type(&text_encoder, "input_ids")?;
        let text_request = text_encoder.create_infer_request().ov(|| "creating a text encoder request".into())?;
        let safety = if options.safety_checker {
            let checker = SafetyChecker::load(&mut core, dir, &options.device)?;
            match &checker {
                Some(checker) => tracing::info!(model = %dir.display(), form = checker.form(), "NSFW filter loaded"),
                None => {
                    tracing::warn!(model = %dir.display(), "the NSFW filter is on but the model has no safety_checker/; images are not filtered")
                }
            }
            checker
        } else {
            None
        };
        Ok(SdModel {
            files,
            tokenizer,
            core,
            options: options.clone(),
            _text_encoder: text_encoder,
            text_request,
            text_input_type,
            sized: Vec::new(),
            safety,
            _text_weights: text_weights,
        })
    }

    pub fn default_scheduler(&self) -> SchedulerKind {
        self.files.default_scheduler
    }

    /// Compile (or reuse) the UNet and VAE for `width` × `height` at `batch`; returns the
    /// milliseconds spent compiling (0 when cached).
    pub fn prepare(&mut self, width: u32, height: u32, batch: usize) -> Result<f64, InferenceError> {
        let key = (width, height, batch);
        if let Some(pos) = self.sized.iter().position(|s| s.key == key) {
            let entry = self.sized.remove(pos);
            self.sized.push(entry);
            return Ok(0.0);
        }
        let started = std::time::Instant::now();
        if self.sized.len() >= self.options.compiled_sizes.max(1) {
            self.sized.remove(0); // free the least recently used size before compiling the next
        }
        // The graphs are read again for every size and dropped once compiled, their weights'
        // pages given back (`parts::settle`): holding the UNet's beside its compiled copy cost
        // ~0.7 GB.
        let (h, w) = (height as i64 / 8, width as i64 / 8);
        let (b, channels) = (batch as i64, self.files.latent_channels as i64);
        let hidden = self.files.text_hidden_size as i64;
        let (mut unet_graph, unet_weights) =
            parts::read_unet(&mut self.core, &self.files.dir, self.options.unet_linear)?;
        if self.options.static_shapes {
            let sample = static_shape(&[b, channels, h, w])?;
            let (timestep, states) = (static_shape(&[1])?, static_shape(&[b, 77, hidden])?);
            unet_graph
                .reshape(&[("sample", &sample), ("timestep", &timestep), ("encoder_hidden_states", &states)])
                .ov(|| format!("reshaping the UNet to {width}x{height}"))?;
        }
        let unet = self.compile(unet_graph, "the UNet")?;
        let from_cache = parts::loaded_from_cache(&unet);
        // Given back before the VAE compiles and the first step allocates: the peak of a first
        // compile is then the UNet's compile alone.
        let unet_weights = parts::settle(unet_weights, &unet, self.options.static_shapes);
        let (mut vae_graph, vae_weights) = parts::read(&mut self.core, &self.files.dir, "vae_decoder")?;
        if self.options.static_shapes {
            let latent = static_shape(&[1, channels, h, w])?;
            vae_graph
                .reshape(&[("latent_sample", &latent)])
                .ov(|| format!("reshaping the VAE decoder to {width}x{height}"))?;
        }
        let vae = self.compile(vae_graph, "the VAE decoder")?;
        let vae_weights = parts::settle(vae_weights, &vae, self.options.static_shapes);
        let (mut unet, mut vae) = (unet, vae);
        let timestep_type = input_type(&unet, "timestep")?;
        let unet_request = unet.create_infer_request().ov(|| "creating a UNet request".into())?;
        let vae_request = vae.create_infer_request().ov(|| "creating a VAE request".into())?;
        self.sized.push(SizedModels {
            key,
            _unet: unet,
            _vae: vae,
            unet: unet_request,
            vae: vae_request,
            timestep_type,
            _weights: unet_weights.into_iter().chain(vae_weights).collect(),
        });
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            width,
            height,
            batch,
            ms = ms as u64,
            unet_from_cache = from_cache,
            "compiled the image model for this size"
        );
        Ok(ms)
    }

    /// Compile `graph`, consuming it so it is freed as soon as it is compiled.
    fn compile(&mut self, graph: Model, what: &str) -> Result<CompiledModel, InferenceError> {
        self.core
            .compile_model(&graph, DeviceType::from(self.options.device.as_str()))
            .ov(|| format!("compiling {what}"))
    }

    fn current(&mut self) -> Result<&mut SizedModels, InferenceError> {
        self.sized.last_mut().ok_or_else(|| InferenceError::Generation("no size prepared".into()))
    }

    /// CLIP `last_hidden_state` for 77 token ids: [77 × hidden] values.
    pub fn encode_text(&mut self, ids: &[i64]) -> Result<Vec<f32>, InferenceError> {
        let tensor = int_tensor(self.text_input_type, &[1, ids.len() as i64], ids)?;
        let request = &mut self.text_request;
        request.set_tensor("input_ids", &tensor).ov(|| "setting input_ids".into())?;
        request.infer().ov(|| "running the text encoder".into())?;
        let out = request.get_tensor("last_hidden_state").ov(|| "reading last_hidden_state".into())?;
        Ok(out.get_data::<f32>().ov(|| "reading last_hidden_state".into())?.to_vec())
    }

    /// Set the text conditioning for the prepared size's UNet runs: [batch, 77, hidden] values
    /// (negative prompt first under guidance). It holds until the next call, so the same states
    /// are not copied into the request again at every step.
    pub fn condition(&mut self, states: &[f32]) -> Result<(), InferenceError> {
        let hidden = self.files.text_hidden_size as i64;
        let models = self.current()?;
        let tensor = f32_tensor(&[models.key.2 as i64, 77, hidden], states)?;
        models.unet.set_tensor("encoder_hidden_states", &tensor).ov(|| "setting encoder_hidden_states".into())
    }

    /// One UNet run on the prepared size: `sample` is [batch, C, h, w].
    pub fn unet(&mut self, sample: &[f32], timestep: i64) -> Result<Vec<f32>, InferenceError> {
        let channels = self.files.latent_channels as i64;
        let models = self.current()?;
        let (w, h, b) = (models.key.0 as i64 / 8, models.key.1 as i64 / 8, models.key.2 as i64);
        let request = &mut models.unet;
        request.set_tensor("sample", &f32_tensor(&[b, channels, h, w], sample)?).ov(|| "setting sample".into())?;
        let t = match models.timestep_type {
            openvino::ElementType::F32 => f32_tensor(&[1], &[timestep as f32])?,
            other => int_tensor(other, &[1], &[timestep])?,
        };
        request.set_tensor("timestep", &t).ov(|| "setting timestep".into())?;
        request.infer().ov(|| "running the UNet".into())?;
        let out = request.get_output_tensor_by_index(0).ov(|| "reading the UNet output".into())?;
        Ok(out.get_data::<f32>().ov(|| "reading the UNet output".into())?.to_vec())
    }

    /// Decode latents (already divided by the VAE scaling factor) into [3, H, W] values in [-1, 1].
    pub fn decode(&mut self, latents: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let channels = self.files.latent_channels as i64;
        let models = self.current()?;
        let (w, h) = (models.key.0 as i64 / 8, models.key.1 as i64 / 8);
        let request = &mut models.vae;
        request
            .set_tensor("latent_sample", &f32_tensor(&[1, channels, h, w], latents)?)
            .ov(|| "setting latent_sample".into())?;
        request.infer().ov(|| "running the VAE decoder".into())?;
        let out = request.get_output_tensor_by_index(0).ov(|| "reading the VAE output".into())?;
        Ok(out.get_data::<f32>().ov(|| "reading the VAE output".into())?.to_vec())
    }
}

fn static_shape(dims: &[i64]) -> Result<PartialShape, InferenceError> {
    PartialShape::new_static(dims.len() as i64, dims).ov(|| format!("making the shape {dims:?}"))
}
