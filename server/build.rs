//! Builds `native/paged_attention.cpp` into a shared object that the server embeds and loads at run
//! time (llm/paged/shim.rs). It links against the OpenVINO the project uses — the one named by
//! OPENVINO_INCLUDE_DIR + OPENVINO_LIB_DIR, a system install (INTEL_OPENVINO_DIR), or the wheel
//! unpacked into `.openvino/` by scripts/setup.sh. Without headers or a C++ compiler the server
//! still builds: paged attention then reports why it is unavailable and stateful attention runs.

use std::{
    env,
    path::{Path, PathBuf},
};

const SOURCE: &str = "native/paged_attention.cpp";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["OPENVINO_INCLUDE_DIR", "OPENVINO_LIB_DIR", "INTEL_OPENVINO_DIR", "CXX"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // Where scripts/setup.sh puts the wheel: a build before setup is redone once it has run.
    if let Some(root) =
        env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).and_then(|m| m.parent().map(Path::to_path_buf))
    {
        println!(
            "cargo:rerun-if-changed={}",
            root.join(".openvino/openvino/include/openvino/core/version.hpp").display()
        );
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shim = out.join("libduet_paged.so");
    let reason = match build(&shim) {
        Ok(()) => String::new(),
        Err(reason) => {
            println!("cargo:warning=paged attention not built: {reason}");
            // An empty file keeps include_bytes! happy; the server reads it as "not built".
            std::fs::write(&shim, b"").expect("writing to OUT_DIR");
            reason
        }
    };
    println!("cargo:rustc-env=DUET_PAGED_SHIM={}", shim.display());
    println!("cargo:rustc-env=DUET_PAGED_SHIM_MISSING={reason}");
}

fn build(shim: &Path) -> Result<(), String> {
    let (include, lib) = openvino_dirs().ok_or("no OpenVINO headers found (run scripts/setup.sh)")?;
    println!("cargo:rerun-if-changed={}", include.join("openvino/core/version.hpp").display());
    let library = std::fs::read_dir(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libopenvino.so")))
        .min_by_key(|p| p.as_os_str().len())
        .ok_or_else(|| format!("no libopenvino.so* in {}", lib.display()))?;
    // cc finds the C++ compiler as cargo users expect (CXX, CXXFLAGS, the target's flags); the
    // shared object is linked by that compiler directly, which cc itself does not do.
    let tool = cc::Build::new()
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .pic(true)
        .debug(false)
        .cargo_metadata(false)
        .try_get_compiler()
        .map_err(|e| format!("no C++ compiler: {e}"))?;
    let compiler = tool.path().display().to_string();
    let output = tool
        .to_command()
        .args(["-shared", "-fvisibility=hidden", "-Wall"])
        // Only the two extern "C" functions are needed; keep every other symbol local.
        .arg("-Wl,--exclude-libs,ALL")
        .arg(format!("-I{}", include.display()))
        .arg(SOURCE)
        .arg(&library)
        .arg("-o")
        .arg(shim)
        .output()
        .map_err(|e| format!("running {compiler}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{compiler} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(())
}

/// (include dir, lib dir) of the OpenVINO to build against, in the order the server looks for
/// its runtime (inference/runtime.rs).
fn openvino_dirs() -> Option<(PathBuf, PathBuf)> {
    let has_headers = |dir: &Path| dir.join("openvino/pass/sdpa_to_paged_attention.hpp").is_file();
    if let (Ok(include), Ok(lib)) = (env::var("OPENVINO_INCLUDE_DIR"), env::var("OPENVINO_LIB_DIR")) {
        return Some((include.into(), lib.into()));
    }
    if let Ok(root) = env::var("INTEL_OPENVINO_DIR") {
        let root = PathBuf::from(root).join("runtime");
        if has_headers(&root.join("include")) {
            return Some((root.join("include"), root.join("lib/intel64")));
        }
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").ok()?);
    let wheel = manifest.parent()?.join(".openvino/openvino");
    has_headers(&wheel.join("include")).then(|| (wheel.join("include"), wheel.join("libs")))
}
