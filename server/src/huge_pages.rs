//! Transparent huge pages for OpenVINO's buffers.
//!
//! Why: the CPU plugin repacks a model's weights and allocates its activations with glibc's
//! malloc, on 4 KiB pages. Decoding streams ~1 GB of repacked weights per token and a UNet step
//! streams large activations, and on 4 KiB pages much of that time goes to TLB misses. glibc's
//! `glibc.malloc.hugetlb=1` tunable makes malloc ask for transparent huge pages on the memory it
//! maps. Measured on the full-size models (2 cores, alternating runs): decoding 76.3 → 72.6 ms per
//! token; a 256x256 UNet step 1331 → 1267 ms in one A/B, but within run-to-run noise (±5 %) in
//! the side-by-side benchmark against GenAI with and without the tunable; start-up about 2 s
//! slower (the kernel compacts memory to find the pages), peak memory within 3 %.
//!
//! Tunables are read only when a process starts, so the server starts itself again, once, with
//! the tunable added (same process id, arguments and environment). A `GLIBC_TUNABLES` that
//! already names `glibc.malloc.hugetlb` is left alone, which also ends the restart.

use std::sync::OnceLock;

const TUNABLE: &str = "glibc.malloc.hugetlb";
const KERNEL_SETTING: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Why the restart failed, when it did (logged once logging is set up).
static RESTART_FAILURE: OnceLock<String> = OnceLock::new();

/// Why [`restart_with_huge_pages`] could not restart the program, if it tried and failed.
pub fn restart_failure() -> Option<&'static str> {
    RESTART_FAILURE.get().map(String::as_str)
}

/// `GLIBC_TUNABLES` with the huge-page tunable added, or `None` when it already names it.
pub fn tunables_with_huge_pages(current: Option<&str>) -> Option<String> {
    match current.map(str::trim).filter(|c| !c.is_empty()) {
        None => Some(format!("{TUNABLE}=1")),
        Some(c) if names_tunable(c) => None,
        Some(c) => Some(format!("{c}:{TUNABLE}=1")),
    }
}

fn names_tunable(tunables: &str) -> bool {
    tunables.split(':').any(|t| t.split('=').next() == Some(TUNABLE))
}

/// Whether the kernel's THP mode (the contents of `enabled`) lets a process ask for huge pages.
pub fn kernel_allows(setting: &str) -> bool {
    !setting.contains("[never]") && setting.contains('[')
}

/// What this process runs with, for the start-up log.
pub fn status() -> String {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let value = tunables.split(':').find_map(|t| t.strip_prefix(TUNABLE).and_then(|v| v.strip_prefix('=')));
    match value {
        Some("0") => "off (GLIBC_TUNABLES sets glibc.malloc.hugetlb=0)".into(),
        Some(v) => format!("on (glibc.malloc.hugetlb={v})"),
        None => match std::fs::read_to_string(KERNEL_SETTING) {
            Ok(s) if !kernel_allows(&s) => format!("off (the kernel's transparent huge pages: {})", s.trim()),
            Err(_) => "off (this kernel has no transparent huge pages)".into(),
            Ok(_) => "off".into(),
        },
    }
}

/// Start this program again with the tunable set, when it is not yet and the kernel would give
/// huge pages. Returns only when nothing was done or the restart failed (see [`restart_failure`];
/// logging is not set up yet). Call it before any thread starts.
pub fn restart_with_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::{ffi::OsString, os::unix::process::CommandExt};
        let Some(tunables) = tunables_with_huge_pages(std::env::var("GLIBC_TUNABLES").ok().as_deref()) else {
            return;
        };
        if !std::fs::read_to_string(KERNEL_SETTING).is_ok_and(|s| kernel_allows(&s)) {
            return;
        }
        let failure = match std::env::current_exe() {
            Ok(exe) => {
                let mut args = std::env::args_os();
                let arg0 = args.next().unwrap_or_else(|| OsString::from("server"));
                let err = std::process::Command::new(&exe).arg0(arg0).args(args).env("GLIBC_TUNABLES", tunables).exec();
                format!("could not restart {} with huge pages: {err}", exe.display())
            }
            Err(err) => format!("could not find this program to restart it with huge pages: {err}"),
        };
        let _ = RESTART_FAILURE.set(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_added_once_and_never_overrides_the_user() {
        assert_eq!(tunables_with_huge_pages(None).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(tunables_with_huge_pages(Some("")).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(
            tunables_with_huge_pages(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        );
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.hugetlb=1")), None);
        assert_eq!(tunables_with_huge_pages(Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0")), None);
        // A longer name that only starts the same is another tunable.
        assert!(tunables_with_huge_pages(Some("glibc.malloc.hugetlbx=1")).is_some());
    }

    #[test]
    fn kernel_modes_that_give_huge_pages() {
        assert!(kernel_allows("always [madvise] never\n"));
        assert!(kernel_allows("[always] madvise never\n"));
        assert!(!kernel_allows("always madvise [never]\n"));
        assert!(!kernel_allows(""));
    }
}
