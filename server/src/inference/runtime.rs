//! Finding and loading OpenVINO's C library at run time.
//!
//! Order: an explicit `OPENVINO_LIB_DIR`; a system install (`INTEL_OPENVINO_DIR`, then the places
//! openvino-finder knows, e.g. `/usr/lib/x86_64-linux-gnu`); last, the project-local copy that
//! `scripts/setup.sh` unpacks from the official PyPI wheel into `.openvino/`.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Where the setup script puts the wheel's libraries, relative to the project root.
pub const LOCAL_RUNTIME_DIR: &str = ".openvino/openvino/libs";
const LIB_STEM: &str = "libopenvino_c.so";

#[derive(Clone, Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "OpenVINO runtime not found (looked in: {searched}). Run `scripts/setup.sh openvino` to \
         install it into .openvino/, or set OPENVINO_LIB_DIR to the folder holding libopenvino_c.so"
    )]
    NotFound { searched: String },
    #[error("OPENVINO_LIB_DIR={dir}: no libopenvino_c.so* in that folder")]
    NotInExplicitDir { dir: String },
    #[error("OpenVINO runtime at {library} could not be loaded: {reason}")]
    LoadFailed { library: String, reason: String },
}

/// Which folders to search, in order; built from the configuration.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSearch {
    pub explicit_dir: Option<PathBuf>,
    pub intel_openvino_dir: Option<PathBuf>,
    /// Also ask openvino-finder for system-wide installs (off in unit tests, which must not
    /// depend on what this machine has installed).
    pub system_paths: bool,
    /// Folders whose ancestors may hold a project-local `.openvino/` (the working directory and
    /// the executable's folder).
    pub project_roots: Vec<PathBuf>,
}

impl RuntimeSearch {
    /// The library file to load, or why there is none.
    pub fn locate(&self) -> Result<PathBuf, RuntimeError> {
        if let Some(dir) = &self.explicit_dir {
            return pick_library(dir).ok_or_else(|| RuntimeError::NotInExplicitDir { dir: dir.display().to_string() });
        }
        let mut searched = Vec::new();
        if let Some(root) = &self.intel_openvino_dir {
            for dir in [root.join("runtime/lib/intel64"), root.join("lib"), root.join("libs"), root.clone()] {
                if let Some(lib) = pick_library(&dir) {
                    return Ok(lib);
                }
                searched.push(dir);
            }
        }
        if self.system_paths {
            if let Some(lib) = openvino_sys::library::find().filter(|p| p.is_file()) {
                return Ok(lib);
            }
            searched.push(PathBuf::from("system library paths"));
        }
        for root in &self.project_roots {
            for ancestor in root.ancestors() {
                let dir = ancestor.join(LOCAL_RUNTIME_DIR);
                if let Some(lib) = pick_library(&dir) {
                    return Ok(lib);
                }
            }
            searched.push(root.join(LOCAL_RUNTIME_DIR));
        }
        let searched = searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        Err(RuntimeError::NotFound { searched })
    }
}

/// `libopenvino_c.so` if present, else the `libopenvino_c.so.N` with the highest N.
/// (The PyPI wheel ships only versioned names, e.g. `libopenvino_c.so.2641`.)
pub fn pick_library(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(LIB_STEM) else {
            continue;
        };
        let version = if rest.is_empty() {
            vec![u64::MAX] // the unversioned development link wins
        } else if let Some(v) = rest.strip_prefix('.') {
            match v.split('.').map(str::parse).collect::<Result<Vec<u64>, _>>() {
                Ok(v) => v,
                Err(_) => continue,
            }
        } else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| version > *b) {
            best = Some((version, entry.path()));
        }
    }
    best.map(|(_, path)| path)
}

/// The runtime that was loaded into this process.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub library: PathBuf,
    pub version: String,
}

static RUNTIME: OnceLock<Result<Runtime, RuntimeError>> = OnceLock::new();

/// Load the C library once per process; later calls return the first outcome.
pub fn load(search: &RuntimeSearch) -> Result<Runtime, RuntimeError> {
    RUNTIME
        .get_or_init(|| {
            let library = search.locate()?;
            openvino_sys::library::load_from(&library)
                .map_err(|reason| RuntimeError::LoadFailed { library: library.display().to_string(), reason })?;
            let version = openvino::version().build_number;
            Ok(Runtime { library, version })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"").unwrap();
    }

    #[test]
    fn picks_unversioned_then_highest_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pick_library(dir.path()), None);
        touch(dir.path(), "libopenvino_c.so.2541");
        touch(dir.path(), "libopenvino_c.so.2641");
        touch(dir.path(), "libopenvino_c.so.backup");
        touch(dir.path(), "libopenvino.so.9999");
        assert_eq!(pick_library(dir.path()), Some(dir.path().join("libopenvino_c.so.2641")));
        touch(dir.path(), "libopenvino_c.so");
        assert_eq!(pick_library(dir.path()), Some(dir.path().join("libopenvino_c.so")));
    }

    #[test]
    fn intel_openvino_dir_is_searched_before_the_local_copy() {
        let system = tempfile::tempdir().unwrap();
        let lib_dir = system.path().join("runtime/lib/intel64");
        std::fs::create_dir_all(&lib_dir).unwrap();
        touch(&lib_dir, "libopenvino_c.so");
        let local = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(local.path().join(LOCAL_RUNTIME_DIR)).unwrap();
        touch(&local.path().join(LOCAL_RUNTIME_DIR), "libopenvino_c.so.2641");
        let search = RuntimeSearch {
            intel_openvino_dir: Some(system.path().into()),
            project_roots: vec![local.path().into()],
            ..Default::default()
        };
        assert_eq!(search.locate().unwrap(), lib_dir.join("libopenvino_c.so"));
    }

    #[test]
    fn explicit_dir_without_library_is_an_error_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let search = RuntimeSearch { explicit_dir: Some(dir.path().into()), ..Default::default() };
        let err = search.locate().unwrap_err().to_string();
        assert!(err.starts_with("OPENVINO_LIB_DIR="), "{err}");
    }

    #[test]
    fn project_local_copy_is_found_from_a_subfolder() {
        let root = tempfile::tempdir().unwrap();
        let libs = root.path().join(LOCAL_RUNTIME_DIR);
        std::fs::create_dir_all(&libs).unwrap();
        touch(&libs, "libopenvino_c.so.2641");
        let sub = root.path().join("server/tests");
        std::fs::create_dir_all(&sub).unwrap();
        let search = RuntimeSearch { project_roots: vec![sub], ..Default::default() };
        assert_eq!(search.locate().unwrap(), libs.join("libopenvino_c.so.2641"));
    }

    #[test]
    fn missing_runtime_says_what_to_run() {
        let empty = tempfile::tempdir().unwrap();
        let search = RuntimeSearch { project_roots: vec![empty.path().into()], ..Default::default() };
        let err = search.locate().unwrap_err().to_string();
        assert!(err.contains("scripts/setup.sh openvino"), "{err}");
        assert!(!err.contains('\n'));
    }
}
