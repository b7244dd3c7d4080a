//! `server download-models` and `server verify-models`.

use crate::{
    cli::ModelArgs,
    config::{Config, ModelSpec},
    models::{
        env_name, find_files, hub,
        manifest::{check_file, sha256_file, BlobName, FileEntry, Manifest, Problem},
        progress::Tracker,
        required_files,
    },
};
use app::types::ModelRole;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;

/// One model the command works on.
struct Target {
    role: ModelRole,
    spec: ModelSpec,
    revision: String,
}

fn targets(config: &Config, args: &ModelArgs) -> Result<Vec<Target>, String> {
    let both = args.llm.is_none() && args.sd.is_none();
    let mut out = Vec::new();
    for (role, flag, spec, revision) in [
        (ModelRole::Llm, &args.llm, &config.models.llm_model, &config.models.llm_revision),
        (ModelRole::Sd, &args.sd, &config.models.sd_model, &config.models.sd_revision),
    ] {
        let spec = match flag.as_deref() {
            None if !both => continue,
            None | Some("") => spec.clone(),
            Some(repo) => ModelSpec::parse(if role == ModelRole::Llm { "--llm" } else { "--sd" }, repo)?,
        };
        let revision = args.revision.clone().unwrap_or_else(|| revision.clone());
        out.push(Target { role, spec, revision });
    }
    Ok(out)
}

/// Fetch each model (progress bars on a terminal, a log line per file otherwise); fails when any
/// model could not be completed.
pub async fn download(config: &Config, args: ModelArgs) -> Result<(), String> {
    let options = config.hub_options();
    let targets = targets(config, &args)?;
    let count = targets.len();
    let mut failed = 0;
    for target in targets {
        let repo = match &target.spec {
            ModelSpec::Repo(repo) => repo.clone(),
            ModelSpec::Local(dir) => {
                eprintln!("{}: {} is a local folder; nothing to download", env_name(target.role), dir.display());
                continue;
            }
        };
        let dir = options.models_dir.display();
        if options.offline {
            eprintln!("{repo} ({}): checking {dir} only (HF_HUB_OFFLINE)", target.revision);
        } else {
            eprintln!("{repo} ({}): downloading from {} into {dir}", target.revision, options.endpoint);
        }
        let tracker = Tracker::new(|_| {}).with_bars();
        let outcome = hub::fetch(&options, target.role, &repo, &target.revision, &tracker).await;
        tracker.clear();
        match outcome {
            Ok(fetched) => {
                let m = &fetched.manifest;
                println!(
                    "{repo}: {} files, {} at commit {} in {} ({} downloaded, {} already there; sha256 checked)",
                    m.files.len(),
                    HumanBytes(m.total_bytes()),
                    m.commit,
                    fetched.dir.display(),
                    fetched.downloaded,
                    m.files.len() - fetched.downloaded,
                );
            }
            Err(err) => {
                eprintln!("{repo}: {err}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of {count} models could not be downloaded (see above)"))
    }
}

/// Check every model on disk without the network.
pub fn verify(config: &Config, args: ModelArgs) -> Result<(), String> {
    let models_dir = config.models_dir();
    let mut failed = 0;
    for target in targets(config, &args)? {
        let name = target.spec.to_string();
        match verify_one(&models_dir, &target) {
            Ok(summary) => println!("ok {name}: {summary}"),
            Err(problems) => {
                failed += 1;
                println!("FAILED {name}:");
                for line in problems {
                    println!("  {line}");
                }
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} model(s) failed verification; `server download-models` fetches missing or damaged files again"
        ))
    }
}

fn verify_one(models_dir: &Path, target: &Target) -> Result<String, Vec<String>> {
    let Some(dir) = find_files(&target.spec, &target.revision, models_dir) else {
        return Err(vec![format!(
            "not in {} at revision {}; run `server download-models`",
            models_dir.display(),
            target.revision
        )]);
    };
    let missing = crate::inference::missing_files(&dir, required_files(target.role));
    if !missing.is_empty() {
        return Err(missing.into_iter().map(|f| format!("{f}: missing")).collect());
    }
    let repo = match &target.spec {
        ModelSpec::Repo(repo) => repo,
        ModelSpec::Local(_) => {
            return Ok(format!("{}: required files present (a local folder has no hashes to check)", dir.display()))
        }
    };
    let commit = dir.file_name().and_then(|c| c.to_str()).unwrap_or_default().to_string();
    match Manifest::load(models_dir, repo, &commit) {
        Some(manifest) => check_manifest(&dir, &manifest),
        None => adopt(models_dir, repo, &target.revision, &commit, &dir),
    }
}

fn check_manifest(dir: &Path, manifest: &Manifest) -> Result<String, Vec<String>> {
    let bar = hashing_bar(manifest.total_bytes());
    let problems: Vec<String> = manifest
        .files
        .iter()
        .filter_map(|entry| {
            bar.set_message(entry.path.clone());
            check_file(dir, entry, &mut |n| bar.inc(n)).err().map(|p| format!("{}: {p}", entry.path))
        })
        .collect();
    bar.finish_and_clear();
    if problems.is_empty() {
        Ok(format!(
            "commit {}: {} files, {}, sha256 verified against the manifest",
            manifest.commit,
            manifest.files.len(),
            HumanBytes(manifest.total_bytes())
        ))
    } else {
        Err(problems)
    }
}

/// A snapshot with no manifest (filled by another tool, or copied by hand): check each file
/// against the hash its blob is named after, then record a manifest so later starts can spot a
/// partial file without hashing.
fn adopt(models_dir: &Path, repo: &str, revision: &str, commit: &str, dir: &Path) -> Result<String, Vec<String>> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files);
    files.sort();
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(dir.join(f)).ok()).map(|m| m.len()).sum();
    let bar = hashing_bar(total);
    let (mut entries, mut problems, mut unnamed) = (Vec::new(), Vec::new(), 0);
    for rel in &files {
        let path = dir.join(rel);
        bar.set_message(rel.clone());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let sha256 = match sha256_file(&path, &mut |n| bar.inc(n)) {
            Ok(sha) => sha,
            Err(err) => {
                problems.push(format!("{rel}: {err}"));
                continue;
            }
        };
        match BlobName::of_link(&path) {
            Some(BlobName::Sha256(expected)) if expected != sha256 => {
                problems.push(format!("{rel}: {}", Problem::Hash { expected, actual: sha256.clone() }));
            }
            Some(BlobName::GitSha1(expected)) => match crate::models::manifest::git_blob_sha1(&path) {
                Ok(actual) if actual != expected => {
                    problems.push(format!("{rel}: git blob {actual}, expected {expected}"))
                }
                Ok(_) => {}
                Err(err) => problems.push(format!("{rel}: {err}")),
            },
            Some(BlobName::Sha256(_)) => {}
            None => unnamed += 1,
        }
        entries.push(FileEntry { path: rel.clone(), size, sha256 });
    }
    bar.finish_and_clear();
    if !problems.is_empty() {
        return Err(problems);
    }
    let manifest = Manifest {
        repo: repo.into(),
        revision: revision.into(),
        commit: commit.into(),
        // When it was checked: the download itself happened elsewhere.
        downloaded_at: hub::now_rfc3339(),
        files: entries,
    };
    let saved = manifest.save(models_dir).map_err(|e| vec![format!("could not write the manifest: {e}")])?;
    let checked = files.len() - unnamed;
    Ok(format!(
        "commit {commit}: {} files, {}; {checked} checked against their blob names{}; manifest written to {}",
        files.len(),
        HumanBytes(total),
        if unnamed > 0 {
            format!(", {unnamed} plain files (not links to hub blobs) could not be checked")
        } else {
            String::new()
        },
        saved.display()
    ))
}

/// Paths of the files under `dir`, relative and `/`-separated (symlinks followed).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if path.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

fn hashing_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("checking {msg:>32!} [{bar:30}] {bytes}/{total_bytes}") {
        bar.set_style(style);
    }
    bar
}
