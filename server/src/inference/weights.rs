//! Reading an OpenVINO IR with its weights in memory we allocate, instead of OpenVINO's default
//! of mapping the `.bin` file. Used for the chat model (paged attention; the stateful graph
//! only without OpenVINO's cache, whose imported blob decodes as fast either way).
//!
//! Why: decoding reads every weight once per token, and from a file mapping it measured slower,
//! for openvino-genai as for us (`ENABLE_MMAP=NO` speeds it up alike; the numbers per machine are
//! in bench/README.md). The price is start-up (reading 1 GB took 0.5-0.9 s) and the file's pages
//! held by the process. The image model keeps the mapping: its UNet is compute-bound (same step
//! time either way) and reading it in only slowed the start.
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

/// A model's `.bin` mapped from its file (as OpenVINO maps it) with a tail of our own memory
/// after it, in one range: OpenVINO takes a single weights buffer, and copying the file into
/// memory would hold all of it for as long as the compiled model lives, where a mapping's
/// untouched pages cost nothing. The image model reads every part through one (so their pages
/// can go once compiled), the UNet with its unpacked linear weights in the tail
/// ([`super::diffusion::unpack`]).
#[cfg(unix)]
pub struct ExtendedWeights {
    base: *mut u8,
    len: usize,
    /// Where the tail starts: the file's length rounded up to a page.
    pub tail_offset: usize,
    tensor: Option<Tensor>,
}

// SAFETY: the mapping is plain memory owned by this value; the raw pointer is never shared
// outside it except through the tensor, which OpenVINO reads from any thread.
#[cfg(unix)]
unsafe impl Send for ExtendedWeights {}

#[cfg(unix)]
impl ExtendedWeights {
    /// The file `bin` mapped read-only, followed by `tail_len` zeroed bytes to fill ([`Self::split_mut`]).
    pub fn map(bin: &Path, tail_len: usize) -> Result<Self, InferenceError> {
        use std::os::fd::AsRawFd;
        let io = |e: std::io::Error| InferenceError::BadModel(format!("{}: {e}", bin.display()));
        let file = std::fs::File::open(bin).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let tail_offset = file_len.div_ceil(page) * page;
        let len = (tail_offset + tail_len).max(page);
        // SAFETY: a fresh anonymous mapping; its file part is then replaced in place (MAP_FIXED
        // inside a range we own), and every page is unmapped once, in Drop.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io(std::io::Error::last_os_error()));
            }
            let weights = ExtendedWeights { base: base.cast(), len, tail_offset, tensor: None };
            if file_len > 0 {
                let mapped = libc::mmap(
                    base,
                    file_len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    0,
                );
                if mapped == libc::MAP_FAILED {
                    return Err(io(std::io::Error::last_os_error()));
                }
            }
            Ok(weights)
        }
    }

    /// The file's bytes, and the tail to write, until [`Self::tensor`] hands the buffer to OpenVINO.
    pub fn split_mut(&mut self) -> (&[u8], &mut [u8]) {
        assert!(self.tensor.is_none(), "the weights are OpenVINO's once their tensor exists");
        // SAFETY: the first `tail_offset` bytes are mapped read-only (past the file's end the
        // kernel zero-fills the last page) and nothing writes them; the tail lies after them
        // inside our anonymous mapping, and `&mut self` makes these the only views.
        unsafe {
            (
                std::slice::from_raw_parts(self.base, self.tail_offset),
                std::slice::from_raw_parts_mut(self.base.add(self.tail_offset), self.len - self.tail_offset),
            )
        }
    }

    /// Drop the file's pages from this process once a model is compiled from them; the kernel
    /// reads them again from its page cache if anything touches them later. Always safe: the
    /// file part is mapped read-only, so no page holds anything the file does not.
    pub fn release_file_pages(&mut self) {
        self.advise_dont_need(0, self.tail_offset);
    }

    /// Give the tail's pages back; the tail reads as zeros after. Only for once every model read
    /// from it holds its own copy of the values (the CPU plugin packs linear weights into its
    /// own layout when it compiles for static shapes).
    pub fn release_tail(&mut self) {
        self.advise_dont_need(self.tail_offset, self.len - self.tail_offset);
    }

    fn advise_dont_need(&mut self, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        // SAFETY: `start` is page-aligned (0 or `tail_offset`) and the range lies inside our own
        // private mapping, which stays mapped: MADV_DONTNEED only frees its pages.
        unsafe {
            libc::madvise(self.base.add(start).cast(), len, libc::MADV_DONTNEED);
        }
    }

    /// A u8 tensor over the whole range, sharing it (no copy). OpenVINO keeps its own reference
    /// to the tensor in every model read from it, so `self` must outlive them: owners drop their
    /// compiled models first.
    pub fn tensor(&mut self) -> Result<&Tensor, InferenceError> {
        if self.tensor.is_none() {
            let ctx = "sharing the weights with OpenVINO";
            let dims = [self.len as i64];
            let mut shape = openvino_sys::ov_shape_t { rank: 0, dims: std::ptr::null_mut() };
            let mut raw = std::ptr::null_mut();
            // SAFETY: plain C API calls with valid out-pointers; the shape is freed after use
            // (the tensor copies it), and the host memory stays mapped until Drop.
            let status = unsafe {
                let status = openvino_sys::ov_shape_create(1, dims.as_ptr(), &mut shape);
                if status != openvino_sys::ov_status_e::OK {
                    status
                } else {
                    let status = openvino_sys::ov_tensor_create_from_host_ptr(
                        openvino_sys::ov_element_type_e::U8,
                        shape,
                        self.base.cast(),
                        &mut raw,
                    );
                    openvino_sys::ov_shape_free(&mut shape);
                    status
                }
            };
            if status != openvino_sys::ov_status_e::OK || raw.is_null() {
                return Err(InferenceError::BadModel(format!("{ctx}: OpenVINO status {status:?}")));
            }
            const _: () =
                assert!(std::mem::size_of::<Tensor>() == std::mem::size_of::<*mut openvino_sys::ov_tensor_t>());
            // SAFETY: `Tensor` is a struct with one field, the `*mut ov_tensor_t` (checked by size
            // above), and frees it with ov_tensor_free on drop, as this handle needs.
            self.tensor = Some(unsafe { std::mem::transmute::<*mut openvino_sys::ov_tensor_t, Tensor>(raw) });
        }
        Ok(self.tensor.as_ref().expect("set above"))
    }
}

#[cfg(unix)]
impl Drop for ExtendedWeights {
    fn drop(&mut self) {
        self.tensor = None;
        // SAFETY: unmaps exactly the range mapped in `map`, once.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
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

    #[cfg(unix)]
    #[test]
    fn released_file_pages_read_the_file_again_and_a_released_tail_reads_zeros() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let mut weights = ExtendedWeights::map(file.path(), 3000).unwrap();
        assert_eq!(weights.tail_offset % 4096, 0, "the tail starts on a page");
        weights.split_mut().1.fill(9);
        weights.release_file_pages();
        let (file_part, tail) = weights.split_mut();
        assert_eq!(&file_part[..bytes.len()], &bytes[..], "the file's bytes, read again");
        assert!(tail.iter().all(|&b| b == 9), "the tail kept its values");
        weights.release_tail();
        let (file_part, tail) = weights.split_mut();
        assert_eq!(&file_part[..bytes.len()], &bytes[..]);
        assert!(tail.iter().all(|&b| b == 0), "a released tail reads zeros");
    }

    #[test]
    fn huge_page_span_keeps_to_whole_pages_inside_the_buffer() {
        let mib = 1 << 20;
        assert_eq!(huge_page_span(mib, 6 * mib), (2 * mib, 6 * mib));
        assert_eq!(huge_page_span(2 * mib, 4 * mib), (2 * mib, 6 * mib));
        let (start, end) = huge_page_span(mib, 2 * mib);
        assert!(end <= start, "a buffer holding no whole huge page gets no advice");
    }
}
