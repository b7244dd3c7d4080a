//! Inference over OpenVINO: the runtime, the model loaders and the threads that own them.
//! Nothing here knows about HTTP.

pub mod cpu;
pub mod diffusion;
pub mod engine;
pub mod llm;
pub mod mock;
pub mod npy;
pub mod remote;
pub mod runtime;
pub mod weights;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("{dir}: missing model files: {}", files.join(", "))]
    MissingFiles { dir: PathBuf, files: Vec<String> },
    #[error("{context}: {source}")]
    OpenVino { context: String, source: openvino::InferenceError },
    #[error("OpenVINO could not start: {0}")]
    Setup(String),
    #[error("{0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("{0}")]
    BadModel(String),
    #[error("the engine thread has stopped")]
    EngineGone,
    #[error("{0}")]
    Generation(String),
    #[error("the KV cache is full: {0}")]
    CacheFull(String),
    #[error("{0}")]
    Failed(llm::Failure),
}

/// Attach what we were doing to an OpenVINO error, so a failure names the file or tensor.
pub(crate) trait OvContext<T> {
    fn ov(self, context: impl FnOnce() -> String) -> Result<T, InferenceError>;
}

impl<T> OvContext<T> for Result<T, openvino::InferenceError> {
    fn ov(self, context: impl FnOnce() -> String) -> Result<T, InferenceError> {
        self.map_err(|source| InferenceError::OpenVino { context: context(), source })
    }
}

/// Files of `required` that `dir` lacks.
pub fn missing_files(dir: &Path, required: &[&str]) -> Vec<String> {
    required.iter().filter(|f| !dir.join(f).is_file()).map(|f| f.to_string()).collect()
}

pub(crate) fn require_files(dir: &Path, required: &[&str]) -> Result<(), InferenceError> {
    let files = missing_files(dir, required);
    if files.is_empty() {
        Ok(())
    } else {
        Err(InferenceError::MissingFiles { dir: dir.to_path_buf(), files })
    }
}

/// FNV-1a over `bytes`, continuing from `hash` (start from [`FNV_OFFSET`]): a stable hash for
/// keys and mock pictures (std's hasher may change between Rust releases).
pub fn fnv1a(hash: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(hash, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A fresh random seed for requests that give none (reported back, so the result can be made again).
pub fn fresh_seed() -> u64 {
    uuid::Uuid::new_v4().as_u128() as u64
}

/// A new OpenVINO core (the C library must be loaded first, see [`runtime::load`]).
pub fn new_core() -> Result<openvino::Core, InferenceError> {
    openvino::Core::new().map_err(|e| InferenceError::Setup(e.to_string()))
}

/// Set device properties on `core` (they apply to every later compile for that device), plus
/// OpenVINO's compiled-model cache under `cache_dir/openvino/<settings>` when given.
pub(crate) fn configure_device(
    core: &mut openvino::Core,
    device: &str,
    properties: &[(String, String)],
    cache_dir: Option<&Path>,
) -> Result<(), InferenceError> {
    let cache = cache_dir.map(|c| {
        ("CACHE_DIR".to_string(), c.join("openvino").join(settings_key(device, properties)).display().to_string())
    });
    let target = openvino::DeviceType::from(device);
    for (key, value) in properties.iter().chain(cache.as_ref()) {
        core.set_property(&target, &openvino::RwPropertyKey::Other(key.clone().into()), value)
            .ov(|| format!("setting {key}={value} on {device}"))?;
    }
    Ok(())
}

/// A folder name for a device and its properties. OpenVINO's cache key covers the graph and the
/// properties given at compile time, not those set on the core beforehand (as here): without its
/// own folder per setting, a model compiled at f32 was imported again for a bf16 run (measured:
/// UNet steps 1.47 s instead of 0.44 s after switching SD_PRECISION).
pub(crate) fn settings_key(device: &str, properties: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    let bytes = std::iter::once(device.to_string()).chain(pairs).flat_map(|p| p.into_bytes().into_iter().chain([0xff]));
    format!("{}-{:016x}", device.to_ascii_lowercase(), fnv1a(FNV_OFFSET, bytes))
}

/// A tensor of `shape` filled from `data`, in the element type the model's input expects
/// (exports differ: `input_ids` may be i64 or i32).
pub(crate) fn int_tensor(
    element: openvino::ElementType,
    shape: &[i64],
    data: &[i64],
) -> Result<openvino::Tensor, InferenceError> {
    let ctx = || format!("creating a {element:?} tensor of shape {shape:?}");
    let mut tensor = openvino::Tensor::new(element, &openvino::Shape::new(shape).ov(ctx)?).ov(ctx)?;
    match element {
        openvino::ElementType::I64 => tensor.get_data_mut::<i64>().ov(ctx)?.copy_from_slice(data),
        openvino::ElementType::I32 => {
            for (dst, src) in tensor.get_data_mut::<i32>().ov(ctx)?.iter_mut().zip(data) {
                *dst =
                    i32::try_from(*src).map_err(|_| InferenceError::BadModel(format!("{src} does not fit in i32")))?;
            }
        }
        other => return Err(InferenceError::BadModel(format!("unsupported integer input type {other:?}"))),
    }
    Ok(tensor)
}

/// An f32 tensor of `shape` filled from `data` (whose length must match).
pub(crate) fn f32_tensor(shape: &[i64], data: &[f32]) -> Result<openvino::Tensor, InferenceError> {
    let ctx = || format!("creating an f32 tensor of shape {shape:?}");
    let mut tensor =
        openvino::Tensor::new(openvino::ElementType::F32, &openvino::Shape::new(shape).ov(ctx)?).ov(ctx)?;
    let dst = tensor.get_data_mut::<f32>().ov(ctx)?;
    if dst.len() != data.len() {
        return Err(InferenceError::Generation(format!("{} values for shape {shape:?}", data.len())));
    }
    dst.copy_from_slice(data);
    Ok(tensor)
}

/// The element type of a compiled model's input, by name.
pub(crate) fn input_type(
    compiled: &openvino::CompiledModel,
    name: &str,
) -> Result<openvino::ElementType, InferenceError> {
    compiled
        .get_input_by_name(name)
        .and_then(|node| node.get_element_type())
        .ov(|| format!("looking up model input {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_has_its_own_cache_folder() {
        let p = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let f32 = settings_key("CPU", &p(&[("PERFORMANCE_HINT", "LATENCY"), ("INFERENCE_PRECISION_HINT", "f32")]));
        let same = settings_key("CPU", &p(&[("INFERENCE_PRECISION_HINT", "f32"), ("PERFORMANCE_HINT", "LATENCY")]));
        let fast = settings_key("CPU", &p(&[("PERFORMANCE_HINT", "LATENCY")]));
        assert_eq!(f32, same, "the order properties are listed in does not matter");
        assert_ne!(f32, fast);
        assert_ne!(fast, settings_key("GPU", &p(&[("PERFORMANCE_HINT", "LATENCY")])));
        assert!(f32.starts_with("cpu-") && f32.len() == 20, "{f32}");
    }
}
