//! CLIP's tokenizer, built with the tokenizers crate from `tokenizer/tokenizer.json` when the
//! folder has one, else from `vocab.json` + `merges.txt` with the rules Hugging Face uses for
//! CLIP: NFC, whitespace runs collapsed, lower-cased, split into words/numbers/punctuation,
//! byte-level BPE with `</w>` marking word ends. Prompts become exactly 77 ids:
//! BOS, at most 75 tokens, EOS, then padding.

use serde_json::{json, Value};
use std::path::Path;

/// CLIP's context length.
pub const MAX_LENGTH: usize = 77;

/// CLIP's pre-tokenization pattern (contractions, letter runs, single digits, punctuation runs).
const CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct TokenizerError {
    pub file: String,
    pub reason: String,
}

impl ClipTokenizer {
    /// Load from a pipeline's `tokenizer/` folder.
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        let err = |file: &Path, reason: String| TokenizerError { file: file.display().to_string(), reason };
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))
        };
        let special = special_tokens(dir);
        let json_path = dir.join("tokenizer.json");
        let inner = if json_path.is_file() {
            tokenizers::Tokenizer::from_file(&json_path).map_err(|e| err(&json_path, e.to_string()))?
        } else {
            let vocab: Value =
                serde_json::from_str(&read("vocab.json")?).map_err(|e| err(&dir.join("vocab.json"), e.to_string()))?;
            let merges = read("merges.txt")?;
            let spec = clip_tokenizer_json(vocab, &merges, &special.unk);
            tokenizers::Tokenizer::from_bytes(spec.to_string().as_bytes())
                .map_err(|e| err(&dir.join("vocab.json"), format!("building the tokenizer: {e}")))?
        };
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| err(&dir.join("vocab.json"), format!("no token {token:?}")))
        };
        Ok(ClipTokenizer { bos: id(&special.bos)?, eos: id(&special.eos)?, pad: id(&special.pad)?, inner })
    }

    /// `text` as 77 ids: BOS, up to 75 tokens (the rest is cut, as CLIP can see no more), EOS, padding.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, String> {
        let encoding = self.inner.encode(text, false).map_err(|e| e.to_string())?;
        let tokens = encoding.get_ids();
        let kept = tokens.len().min(MAX_LENGTH - 2);
        let mut ids = Vec::with_capacity(MAX_LENGTH);
        ids.push(self.bos as i64);
        ids.extend(tokens[..kept].iter().map(|&t| t as i64));
        ids.push(self.eos as i64);
        ids.resize(MAX_LENGTH, self.pad as i64);
        Ok(ids)
    }
}

struct SpecialTokens {
    bos: String,
    eos: String,
    pad: String,
    unk: String,
}

/// Special tokens from `special_tokens_map.json` or `tokenizer_config.json` (plain strings or
/// `{"content": …}` objects); CLIP's defaults where neither says.
fn special_tokens(dir: &Path) -> SpecialTokens {
    let maps: Vec<Value> = ["special_tokens_map.json", "tokenizer_config.json"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    let find = |key: &str, default: &str| {
        maps.iter()
            .find_map(|m| match &m[key] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
                _ => None,
            })
            .unwrap_or_else(|| default.to_string())
    };
    let eos = find("eos_token", "<|endoftext|>");
    SpecialTokens {
        bos: find("bos_token", "<|startoftext|>"),
        pad: find("pad_token", &eos),
        unk: find("unk_token", &eos),
        eos,
    }
}

/// A tokenizer.json equivalent to Hugging Face's conversion of the slow CLIP tokenizer.
fn clip_tokenizer_json(vocab: Value, merges: &str, unk: &str) -> Value {
    let merges: Vec<&str> = merges.lines().filter(|l| !l.starts_with("#version") && !l.trim().is_empty()).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges
        }
    })
}
