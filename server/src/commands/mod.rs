//! Command-line tools that run the engines directly, without the web server.

pub mod bench;
mod bench_safety;
mod bench_sd;
mod bench_serve;
mod bench_turns;
pub mod generate;
pub mod imagine;
mod measure;
pub mod models;

use crate::{config::Config, inference::runtime};

/// Load OpenVINO as the server would; tools cannot run without it.
fn load_runtime(config: &Config) -> Result<(), String> {
    runtime::load(&config.models.runtime_search()).map(|_| ()).map_err(|e| e.to_string())
}

/// Start the chat engine on `dir` and wait until its model is loaded.
fn start_llm(
    dir: &std::path::Path,
    options: crate::inference::llm::EngineOptions,
) -> Result<(crate::inference::llm::LlmEngine, crate::inference::llm::EngineInfo), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = crate::inference::llm::LlmEngine::start(dir.to_path_buf(), options, move |r| {
        let _ = tx.send(r);
    })
    .map_err(|e| e.to_string())?;
    let info = rx.recv().map_err(|_| "the engine thread stopped".to_string())?.map_err(|e| e.to_string())?;
    Ok((engine, info))
}

/// Apply `--property KEY=VALUE` overrides to a property list; `KEY=` removes the key.
fn override_properties(properties: &mut Vec<(String, String)>, overrides: &[(String, String)]) {
    for (key, value) in overrides {
        properties.retain(|(k, _)| k != key);
        if !value.is_empty() {
            properties.push((key.clone(), value.clone()));
        }
    }
}
