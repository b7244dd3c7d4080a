//! Reading an exported chat model folder (the layout of `OpenVINO/DeepSeek-R1-Distill-Qwen-1.5B-int4-cw-ov`):
//! tokenizer, chat template, generation defaults and size limits. Every error names its file.

use super::{
    sampler::{SamplingOverrides, SamplingParams},
    template::ChatTemplate,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct FileError {
    pub file: PathBuf,
    pub reason: String,
}

fn fail(file: &Path, reason: impl Into<String>) -> FileError {
    FileError { file: file.to_path_buf(), reason: reason.into() }
}

/// The parts of `config.json` the engine needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub max_position_embeddings: usize,
    pub num_hidden_layers: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
}

impl ModelConfig {
    /// Bytes of KV cache one token takes, for keys and values in all layers at `bytes_per_value`.
    pub fn kv_bytes_per_token(&self, bytes_per_value: usize) -> usize {
        2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * bytes_per_value
    }
}

/// `generation_config.json`: how the model's authors want it sampled, and where it stops.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationDefaults {
    pub eos_token_ids: Vec<u32>,
    pub do_sample: bool,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub repetition_penalty: f32,
}

impl GenerationDefaults {
    /// The caller's settings over the model's: without an explicit temperature the model's own
    /// choice holds (sampling at its temperature when `do_sample`, else greedy).
    pub fn resolve(&self, o: &SamplingOverrides, fresh_seed: u64) -> SamplingParams {
        let temperature = o.temperature.unwrap_or(if self.do_sample { self.temperature } else { 0.0 });
        SamplingParams {
            temperature,
            top_k: o.top_k.unwrap_or(self.top_k),
            top_p: o.top_p.unwrap_or(self.top_p),
            repetition_penalty: o.repetition_penalty.unwrap_or(self.repetition_penalty),
            seed: o.seed.unwrap_or(fresh_seed),
        }
    }
}

pub struct LlmFiles {
    pub tokenizer: tokenizers::Tokenizer,
    pub template: ChatTemplate,
    pub config: ModelConfig,
    pub defaults: GenerationDefaults,
    /// The tokenizer's `model_max_length` (the context the model was trained for).
    pub model_max_length: Option<usize>,
}

impl LlmFiles {
    pub fn load(dir: &Path) -> Result<Self, FileError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| fail(&tokenizer_path, format!("cannot load tokenizer: {e}")))?;
        let tok_config_path = dir.join("tokenizer_config.json");
        let tok_config = read_json(&tok_config_path)?;
        let bos = token_text(&tok_config, "bos_token").unwrap_or_default();
        let eos = token_text(&tok_config, "eos_token").unwrap_or_default();
        let (template_file, source) = chat_template_source(dir, &tok_config, &tok_config_path)?;
        let template = ChatTemplate::new(&source, &bos, &eos).map_err(|e| fail(&template_file, e.to_string()))?;

        let config_path = dir.join("config.json");
        let config = parse_config(&read_json(&config_path)?).map_err(|r| fail(&config_path, r))?;

        let gen_path = dir.join("generation_config.json");
        let gen = if gen_path.is_file() { read_json(&gen_path)? } else { Value::Null };
        let eos_ids = token_ids(&gen["eos_token_id"])
            .or_else(|| token_ids(&read_json(&config_path).ok()?["eos_token_id"]))
            .or_else(|| tokenizer.token_to_id(&eos).map(|id| vec![id]))
            .ok_or_else(|| fail(&gen_path, "no eos_token_id here, in config.json or in the tokenizer"))?;
        let defaults = GenerationDefaults {
            eos_token_ids: eos_ids,
            do_sample: gen["do_sample"].as_bool().unwrap_or(false),
            temperature: gen["temperature"].as_f64().unwrap_or(1.0) as f32,
            top_p: gen["top_p"].as_f64().unwrap_or(1.0) as f32,
            top_k: gen["top_k"].as_u64().unwrap_or(0) as usize,
            repetition_penalty: gen["repetition_penalty"].as_f64().unwrap_or(1.0) as f32,
        };
        let model_max_length = tok_config["model_max_length"].as_u64().map(|n| n as usize).filter(|&n| n < 1 << 40);
        Ok(LlmFiles { tokenizer, template, config, defaults, model_max_length })
    }
}

/// The temperature (0 when the model does not sample) and top-p a model folder's
/// `generation_config.json` asks for, as `GenerationDefaults::resolve` would use them; `None`
/// without a readable file.
pub fn sampling_defaults(dir: &Path) -> Option<(f64, f64)> {
    let gen = read_json(&dir.join("generation_config.json")).ok()?;
    let temperature =
        if gen["do_sample"].as_bool().unwrap_or(false) { gen["temperature"].as_f64().unwrap_or(1.0) } else { 0.0 };
    Some((temperature, gen["top_p"].as_f64().unwrap_or(1.0)))
}

fn read_json(path: &Path) -> Result<Value, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| fail(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(path, format!("not valid JSON: {e}")))
}

/// `chat_template.jinja` (transformers 5 layout) wins over `chat_template` in tokenizer_config.json,
/// which may be a string or a list of named templates (then the one named `default`).
fn chat_template_source(
    dir: &Path,
    tok_config: &Value,
    tok_config_path: &Path,
) -> Result<(PathBuf, String), FileError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| fail(&jinja, e.to_string()))?;
        return Ok((jinja, text));
    }
    let source = match &tok_config["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => {
            named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(String::from)
        }
        _ => None,
    };
    source
        .map(|s| (tok_config_path.to_path_buf(), s))
        .ok_or_else(|| fail(tok_config_path, "no chat_template (and no chat_template.jinja beside it)"))
}

/// A special token's text: a plain string or an AddedToken object with `content`.
fn token_text(config: &Value, key: &str) -> Option<String> {
    match &config[key] {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

/// An id or a list of ids.
fn token_ids(value: &Value) -> Option<Vec<u32>> {
    match value {
        Value::Number(n) => n.as_u64().map(|id| vec![id as u32]),
        Value::Array(items) => {
            let ids: Vec<u32> = items.iter().filter_map(|v| v.as_u64()).map(|id| id as u32).collect();
            (!ids.is_empty()).then_some(ids)
        }
        _ => None,
    }
}

fn parse_config(c: &Value) -> Result<ModelConfig, String> {
    let field =
        |name: &str| c[name].as_u64().map(|v| v as usize).ok_or_else(|| format!("missing or non-integer {name}"));
    let heads = field("num_attention_heads")?;
    let hidden = field("hidden_size")?;
    Ok(ModelConfig {
        max_position_embeddings: field("max_position_embeddings")?,
        num_hidden_layers: field("num_hidden_layers")?,
        num_key_value_heads: c["num_key_value_heads"].as_u64().map_or(heads, |v| v as usize),
        head_dim: c["head_dim"].as_u64().map_or(hidden / heads.max(1), |v| v as usize),
        vocab_size: field("vocab_size")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov")
    }

    fn copy_fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(fixture()).unwrap().flatten() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        dir
    }

    #[test]
    fn the_fixture_loads_with_its_generation_defaults() {
        let files = LlmFiles::load(&fixture()).unwrap();
        let eos = files.tokenizer.token_to_id("<｜end▁of▁sentence｜>").unwrap();
        assert_eq!(files.defaults.eos_token_ids, vec![eos]);
        assert!(files.defaults.do_sample);
        assert_eq!((files.defaults.temperature, files.defaults.top_p), (0.6, 0.95));
        assert_eq!(files.config.num_hidden_layers, 2);
        assert_eq!(files.config.head_dim, 16);
        assert_eq!(files.config.kv_bytes_per_token(1), 2 * 2 * 2 * 16);
        assert_eq!(files.model_max_length, Some(16384));
    }

    #[test]
    fn callers_settings_override_the_model_defaults_field_by_field() {
        let d = LlmFiles::load(&fixture()).unwrap().defaults;
        let p = d.resolve(&SamplingOverrides::default(), 42);
        assert_eq!((p.temperature, p.top_p, p.top_k, p.repetition_penalty, p.seed), (0.6, 0.95, 0, 1.0, 42));
        let p = d.resolve(&SamplingOverrides { top_k: Some(5), seed: Some(7), ..Default::default() }, 42);
        assert_eq!((p.temperature, p.top_k, p.seed), (0.6, 5, 7));
        assert!(d.resolve(&SamplingOverrides::greedy(), 1).is_greedy());
        let no_sample = GenerationDefaults { do_sample: false, ..d };
        assert!(no_sample.resolve(&SamplingOverrides::default(), 1).is_greedy());
    }

    #[test]
    fn chat_template_jinja_wins_over_tokenizer_config() {
        let dir = copy_fixture();
        std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}{{ messages[0].content }}").unwrap();
        let files = LlmFiles::load(dir.path()).unwrap();
        let msg = [super::super::template::ChatMessage::new("user", "x")];
        assert_eq!(files.template.render(&msg, true).unwrap(), "<｜begin▁of▁sentence｜>x");
    }

    #[test]
    fn each_broken_file_is_named() {
        let cases: [(&str, &str, &str); 4] = [
            ("tokenizer.json", "{", "tokenizer.json: cannot load tokenizer"),
            ("tokenizer_config.json", "[1,", "tokenizer_config.json: not valid JSON"),
            ("tokenizer_config.json", "{}", "tokenizer_config.json: no chat_template"),
            ("config.json", "{\"hidden_size\": 64}", "config.json: missing or non-integer"),
        ];
        for (file, content, expected) in cases {
            let dir = copy_fixture();
            std::fs::write(dir.path().join(file), content).unwrap();
            let err = LlmFiles::load(dir.path()).err().unwrap().to_string();
            assert!(err.contains(expected), "{file}: {err}");
        }
        let dir = copy_fixture();
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        let err = LlmFiles::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("config.json: No such file"), "{err}");
    }
}
