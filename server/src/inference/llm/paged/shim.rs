//! Loading `native/paged_attention.cpp` (built by build.rs, embedded in the binary) and running
//! its pass on a model read through the C API.

use crate::inference::InferenceError;
use openvino::Model;
use openvino_sys::ov_model_t;
use std::{
    ffi::{c_char, c_int, CStr},
    path::PathBuf,
    sync::OnceLock,
};

static SHIM: &[u8] = include_bytes!(env!("DUET_PAGED_SHIM"));
const MISSING: &str = env!("DUET_PAGED_SHIM_MISSING");

type Transform = unsafe extern "C" fn(*mut ov_model_t, *mut c_char, usize) -> c_int;
type Version = unsafe extern "C" fn() -> *const c_char;

struct Shim {
    transform: Transform,
    /// The OpenVINO version the shim was compiled against.
    version: String,
    // Keeps the functions above mapped.
    _library: libloading::Library,
}

/// The shim, loaded once. Needs the OpenVINO runtime loaded first (its libopenvino.so is found
/// by soname among the libraries already in the process).
fn shim() -> Result<&'static Shim, String> {
    static LOADED: OnceLock<Result<Shim, String>> = OnceLock::new();
    LOADED.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Shim, String> {
    if SHIM.is_empty() {
        return Err(format!("this server was built without it ({MISSING})"));
    }
    let path = write_out()?;
    // SAFETY: the library is ours (built by build.rs); its initialisers only set up C++ statics.
    let library = unsafe { libloading::Library::new(&path) }.map_err(|e| {
        format!(
            "loading {}: {e} (it must match the OpenVINO runtime in use; rebuild after changing it)",
            path.display()
        )
    })?;
    // SAFETY: the signatures match the extern "C" definitions in native/paged_attention.cpp.
    unsafe {
        let transform = *library.get::<Transform>(b"duet_paged_transform\0").map_err(|e| e.to_string())?;
        let version = *library.get::<Version>(b"duet_paged_openvino_version\0").map_err(|e| e.to_string())?;
        let version = CStr::from_ptr(version()).to_string_lossy().into_owned();
        Ok(Shim { transform, version, _library: library })
    }
}

/// The embedded library as a file dlopen can read, named by its contents so several builds can
/// coexist and a second start reuses the file.
fn write_out() -> Result<PathBuf, String> {
    let hash = crate::inference::fnv1a(crate::inference::FNV_OFFSET, SHIM.iter().copied());
    let path = std::env::temp_dir().join(format!("duet-paged-{hash:016x}.so"));
    if std::fs::read(&path).is_ok_and(|bytes| bytes == SHIM) {
        return Ok(path);
    }
    let tmp = path.with_extension(format!("so.{}.tmp", std::process::id()));
    std::fs::write(&tmp, SHIM).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The C API's handle inside the `openvino` crate's `Model`, which has no public accessor.
fn raw(model: &mut Model) -> *mut ov_model_t {
    const _: () = assert!(std::mem::size_of::<Model>() == std::mem::size_of::<*mut ov_model_t>());
    // SAFETY: `Model` is a struct with one field, the `*mut ov_model_t` (checked by size above).
    unsafe { *(model as *mut Model as *mut *mut ov_model_t) }
}

/// Rewrite `model` for paged attention: KV cache in block tensors we pass in, one flat token axis
/// for all sequences of a step, and logits only for the rows in `logits_indices`.
pub fn make_paged(model: &mut Model) -> Result<(), InferenceError> {
    let unavailable = |why: String| InferenceError::Setup(format!("paged attention is unavailable: {why}"));
    let shim = shim().map_err(unavailable)?;
    let inputs_before = model.get_inputs_len().map_err(|e| unavailable(e.to_string()))?;
    let mut error = vec![0 as c_char; 2048];
    // SAFETY: `raw` is a live model from ov_core_read_model; the buffer outlives the call.
    let status = unsafe { (shim.transform)(raw(model), error.as_mut_ptr(), error.len()) };
    if status != 0 {
        // SAFETY: the shim wrote a NUL-terminated message into the buffer.
        let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
        return Err(InferenceError::BadModel(format!("converting to paged attention: {message}")));
    }
    // Read back through the C API: the model must now have the paged inputs.
    let names = input_names(model)?;
    if names.len() <= inputs_before || !names.iter().any(|n| n == "past_lens") {
        return Err(unavailable(format!(
            "the conversion left inputs {names:?} (shim built for OpenVINO {})",
            shim.version
        )));
    }
    Ok(())
}

fn input_names(model: &Model) -> Result<Vec<String>, InferenceError> {
    use crate::inference::OvContext;
    let count = model.get_inputs_len().ov(|| "counting inputs".into())?;
    (0..count)
        .map(|i| model.get_input_by_index(i).and_then(|n| n.get_name()).ov(|| format!("reading input {i}")))
        .collect()
}
