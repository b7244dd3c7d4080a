//! Reading an OpenVINO IR with its weights in memory we allocate, instead of OpenVINO's default
//! of mapping the `.bin` file. Used for the chat model (paged attention; the stateful graph
//! only without OpenVINO's cache, whose imported blob decodes as fast either way).
//!
//! Why: decoding reads every weight once per token, and from a file mapping it is slower.
//! Measured on the full-size 1.5B INT4 chat model, 2 cores, rotated runs: openvino-genai itself
//! decoded at 74-77 ms/token from its default mapping and 69-71 ms with `ENABLE_MMAP=NO`; Duet at
//! 78-83 mapped and 67-70 in memory. Huge pages add little beside that (GenAI 68.2-68.4 ms with
//! them); they are asked for because they cost nothing when the pages are fresh. The price is
//! start-up: reading 1 GB took 0.5-0.9 s here, and the file's pages are held by the process.
//! Re-measured on a later machine (Xeon with AMX, alternating runs): 76.3 ms in memory against
//! 78.6-80.2 mapped, and with glibc's malloc on huge pages (crate::huge_pages, which also covers
//! this buffer) 72.6 against 74.5: a smaller gain there, still a gain.
//! The image model keeps the mapping: its UNet is compute-bound (same step time either way)
//! and reading it in only slowed the start.
//!
//! The model's constants share the tensor (OpenVINO keeps it alive for as long as anything uses
//! it, so the caller may drop its handle). `Placement::Mapped` keeps OpenVINO's mapping, for
//! machines short of RAM (mapped pages can be dropped and re-read by the kernel; ours cannot).

use super::{InferenceError, OvContext};
use openvino::{Core, ElementType, Model, Shape, Tensor};
use std::{io::Read, path::Path};

/// Where a model's weights live while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Read into process memory, on transparent huge pages where the kernel offers them.
    #[default]
    Memory,
    /// Mapped from the `.bin` file by OpenVINO.
    Mapped,
}

/// Read the IR `xml` with weights `bin`, placed as asked.
pub fn read_ir(core: &mut Core, xml: &Path, bin: &Path, placement: Placement) -> Result<Model, InferenceError> {
    let context = || format!("reading {}", xml.display());
    if placement == Placement::Mapped {
        return core.read_model_from_file(&xml.to_string_lossy(), &bin.to_string_lossy()).ov(context);
    }
    let graph = std::fs::read(xml).map_err(|e| InferenceError::BadModel(format!("{}: {e}", xml.display())))?;
    let started = std::time::Instant::now();
    let weights = read_weights(bin)?;
    let read_ms = started.elapsed().as_millis() as u64;
    let model = core.read_model_from_buffer(&graph, weights.as_ref()).ov(context)?;
    let parse_ms = started.elapsed().as_millis() as u64 - read_ms;
    tracing::debug!(weights = %bin.display(), read_ms, parse_ms, "model weights read into memory");
    Ok(model)
}

/// The file's bytes in a u8 tensor (`None` for an empty file: a graph without weights).
fn read_weights(bin: &Path) -> Result<Option<Tensor>, InferenceError> {
    let io = |e: std::io::Error| InferenceError::BadModel(format!("{}: {e}", bin.display()));
    let mut file = std::fs::File::open(bin).map_err(io)?;
    let len = file.metadata().map_err(io)?.len() as usize;
    if len == 0 {
        return Ok(None);
    }
    let ctx = || format!("allocating {len} bytes for {}", bin.display());
    let mut tensor = Tensor::new(ElementType::U8, &Shape::new(&[len as i64]).ov(ctx)?).ov(ctx)?;
    let data = tensor.get_raw_data_mut().ov(ctx)?;
    advise_huge_pages(data);
    file.read_exact(data).map_err(io)?;
    Ok(Some(tensor))
}

const HUGE_PAGE: usize = 2 << 20;

/// Ask for transparent huge pages on the whole 2 MiB pages inside `buffer`, before its pages are
/// first touched (so no later collapse is needed). A kernel without THP, or with THP set to
/// `never`, refuses or ignores it; that only costs the speed-up.
fn advise_huge_pages(buffer: &mut [u8]) {
    let (start, end) = huge_page_span(buffer.as_ptr() as usize, buffer.len());
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside `buffer`, which we own; MADV_HUGEPAGE changes only how the
    // kernel backs those pages, never their contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// The whole huge pages inside `[addr, addr + len)`.
fn huge_page_span(addr: usize, len: usize) -> (usize, usize) {
    (addr.div_ceil(HUGE_PAGE) * HUGE_PAGE, (addr + len) / HUGE_PAGE * HUGE_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_span_keeps_to_whole_pages_inside_the_buffer() {
        let mib = 1 << 20;
        assert_eq!(huge_page_span(mib, 6 * mib), (2 * mib, 6 * mib));
        assert_eq!(huge_page_span(2 * mib, 4 * mib), (2 * mib, 6 * mib));
        let (start, end) = huge_page_span(mib, 2 * mib);
        assert!(end <= start, "a buffer holding no whole huge page gets no advice");
    }
}
