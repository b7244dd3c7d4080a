//! Reading the pipeline's graphs over weights we map ourselves, so that their pages go back to
//! the system once a part is compiled.
//!
//! Why: OpenVINO maps each `.bin` and keeps the mapping for as long as the compiled model lives,
//! and every page the CPU plugin touched while compiling stays in the process's resident memory.
//! At `INFERENCE_PRECISION_HINT=f32` the plugin keeps its own copies of the weights (convolutions
//! folded to f32, linear weights packed into its layout), so those file pages are never read
//! again. Measured on the full-size SD 1.5 INT8 at 256x256: the files' resident pages fell from
//! ~995 MiB to ~175 MiB (the libraries) once given back, and stayed there through the steps.

use super::unpack::{plan, UnetLinear};
use crate::inference::{InferenceError, OvContext};
use openvino::{CompiledModel, Core, Model};
use std::path::Path;

#[cfg(unix)]
pub(super) type PartWeights = crate::inference::weights::ExtendedWeights;
/// Elsewhere OpenVINO maps the file itself.
#[cfg(not(unix))]
pub(super) type PartWeights = ();

/// `dir/part/openvino_model.xml` over its weights.
#[cfg(unix)]
pub(super) fn read(core: &mut Core, dir: &Path, part: &str) -> Result<(Model, PartWeights), InferenceError> {
    let (xml_path, bin) = paths(dir, part);
    let xml = std::fs::read(&xml_path).map_err(|e| bad(&xml_path, &e))?;
    let mut weights = PartWeights::map(&bin, 0)?;
    let graph =
        core.read_model_from_buffer(&xml, Some(weights.tensor()?)).ov(|| format!("reading {}", xml_path.display()))?;
    Ok((graph, weights))
}

#[cfg(not(unix))]
pub(super) fn read(core: &mut Core, dir: &Path, part: &str) -> Result<(Model, PartWeights), InferenceError> {
    Ok((read_graph(core, dir, part)?, ()))
}

/// The UNet's graph, with the linear layers `which` names reading f32 values unpacked from
/// their int8 weights into the mapping's tail ([`super::unpack`]).
#[cfg(unix)]
pub(super) fn read_unet(
    core: &mut Core,
    dir: &Path,
    which: UnetLinear,
) -> Result<(Model, PartWeights), InferenceError> {
    if which == UnetLinear::Int8 {
        return read(core, dir, "unet");
    }
    let (xml_path, bin) = paths(dir, "unet");
    let started = std::time::Instant::now();
    let xml = std::fs::read_to_string(&xml_path).map_err(|e| bad(&xml_path, &e))?;
    let Some(plan) = plan(&xml, which).map_err(|e| bad(&xml_path, &e))? else {
        tracing::warn!(model = %xml_path.display(), "no UNet linear layer to unpack: its layer names do not show the UNet's levels");
        return read(core, dir, "unet");
    };
    let mut weights = PartWeights::map(&bin, plan.tail_len)?;
    let (file, tail) = weights.split_mut();
    plan.fill(file, tail).map_err(|e| bad(&xml_path, &e))?;
    let text = plan.xml(&xml, weights.tail_offset);
    let graph = core
        .read_model_from_buffer(text.as_bytes(), Some(weights.tensor()?))
        .ov(|| format!("reading {}", xml_path.display()))?;
    let (layers, count) = plan.size();
    tracing::info!(layers, weights = count, ms = started.elapsed().as_millis() as u64, %which, "unpacked UNet linear weights to f32");
    Ok((graph, weights))
}

#[cfg(not(unix))]
pub(super) fn read_unet(core: &mut Core, dir: &Path, _: UnetLinear) -> Result<(Model, PartWeights), InferenceError> {
    read(core, dir, "unet")
}

/// What `compiled` still needs of the weights it was compiled from: nothing when OpenVINO
/// imported it from its compiled-model cache (it brought its own); otherwise the mapping, kept
/// alive but with its pages given back. The tail's values are given back only for static shapes,
/// where the plugin packs linear weights while compiling; with dynamic shapes it packs them at
/// the first run. (The file's pages can always go: the kernel reads them again if touched.)
pub(super) fn settle(weights: PartWeights, compiled: &CompiledModel, static_shapes: bool) -> Option<PartWeights> {
    if loaded_from_cache(compiled) {
        return None;
    }
    #[cfg(unix)]
    let weights = {
        let mut weights = weights;
        weights.release_file_pages();
        if static_shapes {
            weights.release_tail();
        }
        weights
    };
    #[cfg(not(unix))]
    let _ = static_shapes;
    Some(weights)
}

/// Whether OpenVINO imported `model` from its compiled-model cache instead of compiling it (then
/// it holds none of the graph's weights). Unknown counts as compiled.
pub(super) fn loaded_from_cache(model: &CompiledModel) -> bool {
    let key = openvino::PropertyKey::Other("LOADED_FROM_CACHE".into());
    model.get_property(&key).is_ok_and(|v| matches!(v.to_ascii_uppercase().as_str(), "YES" | "TRUE" | "1"))
}

/// `dir/part/openvino_model.{xml,bin}` mapped by OpenVINO itself (parts whose pages need not go
/// back, and platforms without our mapping).
pub(super) fn read_graph(core: &mut Core, dir: &Path, part: &str) -> Result<Model, InferenceError> {
    let (xml, bin) = paths(dir, part);
    core.read_model_from_file(&xml.to_string_lossy(), &bin.to_string_lossy())
        .ov(|| format!("reading {}", xml.display()))
}

fn paths(dir: &Path, part: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join(part).join("openvino_model.xml"), dir.join(part).join("openvino_model.bin"))
}

fn bad(path: &Path, e: &dyn std::fmt::Display) -> InferenceError {
    InferenceError::BadModel(format!("{}: {e}", path.display()))
}
