//! The chat model: an OpenVINO export of a stateful decoder (DeepSeek-R1-Distill-Qwen).
//! Inputs `input_ids`, `attention_mask`, `position_ids`, `beam_idx`; output `logits`.

use super::{compile, input_type, int_tensor, require_files, InferenceError, OvContext};
use openvino::{CompiledModel, Core};
use std::path::{Path, PathBuf};

/// Files an exported chat model folder must hold.
pub const REQUIRED_FILES: &[&str] = &[
    "openvino_model.xml",
    "openvino_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
];

pub struct LlmModel {
    pub dir: PathBuf,
    compiled: CompiledModel,
}

impl LlmModel {
    pub fn load(core: &mut Core, dir: &Path, device: &str) -> Result<Self, InferenceError> {
        require_files(dir, REQUIRED_FILES)?;
        let compiled = compile(core, dir, "openvino_model", device)?;
        Ok(LlmModel {
            dir: dir.to_path_buf(),
            compiled,
        })
    }

    /// Run `ids` through a fresh request (an empty KV cache) and return the logits of the last
    /// position: the distribution of the next token.
    pub fn prefill_last_logits(&mut self, ids: &[i64]) -> Result<Vec<f32>, InferenceError> {
        if ids.is_empty() {
            return Err(InferenceError::BadModel(
                "a prompt needs at least one token".into(),
            ));
        }
        let n = ids.len() as i64;
        let mut request = self
            .compiled
            .create_infer_request()
            .ov(|| "creating a request".into())?;
        let positions: Vec<i64> = (0..n).collect();
        let ones = vec![1i64; ids.len()];
        for (name, data) in [
            ("input_ids", ids),
            ("attention_mask", &ones[..]),
            ("position_ids", &positions[..]),
        ] {
            let tensor = int_tensor(input_type(&self.compiled, name)?, &[1, n], data)?;
            request
                .set_tensor(name, &tensor)
                .ov(|| format!("setting {name}"))?;
        }
        let beam = int_tensor(input_type(&self.compiled, "beam_idx")?, &[1], &[0])?;
        request
            .set_tensor("beam_idx", &beam)
            .ov(|| "setting beam_idx".into())?;
        request.infer().ov(|| "running the prefill".into())?;
        let logits = request
            .get_tensor("logits")
            .ov(|| "reading logits".into())?;
        let dims = logits
            .get_shape()
            .ov(|| "reading the logits shape".into())?
            .get_dimensions()
            .to_vec();
        let vocab = *dims.last().unwrap_or(&0) as usize;
        let data = logits.get_data::<f32>().ov(|| "reading logits".into())?;
        if vocab == 0 || data.len() < vocab {
            return Err(InferenceError::BadModel(format!(
                "unexpected logits shape {dims:?}"
            )));
        }
        Ok(data[data.len() - vocab..].to_vec())
    }
}

/// Index of the largest value (the greedy choice); the first wins a tie, as in argmax elsewhere.
pub fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[0.5, 2.0, -1.0, 2.0]), Some(1));
        assert_eq!(argmax(&[-3.0]), Some(0));
    }
}
