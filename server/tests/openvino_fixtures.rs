//! Both fixture models load through the `openvino` crate and give the reference results:
//! the chat model's first greedy token equals openvino-genai's for every reference prompt, and
//! the image model's tokenizer and text encoder match optimum-intel's ids and hidden states.

mod common;

use server::inference::{diffusion::SdModel, llm, llm::LlmModel, new_core, npy};

use common::load_runtime;

fn reference(name: &str) -> serde_json::Value {
    let path = common::fixture(&format!("fixtures/reference/{name}"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &serde_json::Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[test]
fn llm_first_greedy_token_matches_openvino_genai() {
    load_runtime();
    // The graph as exported (no rewrite): the first greedy token comes from the full logits.
    let options = llm::CompileOptions { slice_logits: false, ..Default::default() };
    let mut model = LlmModel::load(&mut new_core().unwrap(), &common::fixture(common::LLM_FIXTURE), &options).unwrap();
    let refs = reference("llm.json");
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let logits = model.prefill_last_logits(&ids(&case["prompt_ids"])).unwrap();
        let expected = ids(&case["greedy_ids"])[0];
        assert_eq!(llm::argmax(&logits), expected as usize, "case {}", case["name"]);
    }
}

#[test]
fn sd_tokenizer_and_text_encoder_match_optimum_intel() {
    load_runtime();
    let mut model = SdModel::load(&common::fixture(common::SD_FIXTURE), &Default::default()).unwrap();
    let refs = reference("sd.json");
    let params = &refs["params"];
    for (text, key) in [(&params["prompt"], "prompt_ids"), (&params["negative_prompt"], "negative_prompt_ids")] {
        assert_eq!(model.tokenizer.encode(text.as_str().unwrap()).unwrap(), ids(&refs[key]), "{text}");
    }
    let out = model.encode_text(&ids(&refs["prompt_ids"])).unwrap();
    let expected = npy::read_f32(&common::fixture("fixtures/reference/sd_text_encoder_last_hidden_state.npy")).unwrap();
    assert_eq!(expected.shape[..2], [1, 77]);
    assert_eq!(out.len(), expected.data.len());
    let max_diff = out.iter().zip(&expected.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 1e-4, "max abs difference {max_diff}");
}

#[test]
fn loading_a_folder_without_the_model_names_the_missing_files() {
    load_runtime();
    let empty = tempfile::tempdir().unwrap();
    let err = LlmModel::load(&mut new_core().unwrap(), empty.path(), &Default::default()).err().unwrap().to_string();
    assert!(err.contains("openvino_model.xml") && err.contains("tokenizer.json"), "{err}");
}

#[test]
fn sliced_logits_equal_the_full_graphs_last_position() {
    load_runtime();
    let dir = common::fixture(common::LLM_FIXTURE);
    let cache = tempfile::tempdir().unwrap();
    // In f32: on CPUs with AMX or AVX-512 BF16, OpenVINO's default is bf16, where two graphs
    // computing the same logits differ by rounding (seen: 0.016); this test is about the graphs.
    let options = |slice_logits| {
        let mut o = llm::CompileOptions { slice_logits, cache_dir: Some(cache.path().into()), ..Default::default() };
        o.properties.push(("INFERENCE_PRECISION_HINT".into(), "f32".into()));
        o
    };
    let mut full = LlmModel::load(&mut new_core().unwrap(), &dir, &options(false)).unwrap();
    let mut sliced = LlmModel::load(&mut new_core().unwrap(), &dir, &options(true)).unwrap();
    assert!(!full.sliced_logits && sliced.sliced_logits);
    let rewritten: Vec<_> = std::fs::read_dir(cache.path().join("ir")).unwrap().flatten().collect();
    assert_eq!(rewritten.len(), 1, "the rewritten IR is cached once");
    for case in reference("llm.json")["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let (a, b) = (full.prefill_last_logits(&prompt).unwrap(), sliced.prefill_last_logits(&prompt).unwrap());
        assert_eq!(a.len(), b.len());
        let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{}: max abs difference {max_diff}", case["name"]);
    }
}
