//! `server generate` and `server bench llm` through the binary, on the fixture model.

mod common;

use common::run_server as server;

fn reference_case(name: &str) -> serde_json::Value {
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture("fixtures/reference/llm.json")).unwrap())
            .unwrap();
    refs["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

#[test]
fn generate_json_matches_the_reference_from_a_prompt_and_from_ids() {
    let model = common::fixture(common::LLM_FIXTURE);
    let case = reference_case("picture_request");
    let max = "48";
    // Greedy, as the reference was made, and one JSON line out.
    let generate = |input: &[&str]| {
        let flags = ["--model", model.to_str().unwrap(), "--temperature", "0", "--max-new-tokens", max, "--json"];
        server(&[&["generate"], input, &flags[..]].concat())
    };
    let (code, out, err) = generate(&["--prompt", "Draw a red fox in the snow"]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["token_ids"], case["greedy_ids"]);
    assert_eq!(line["text"], case["greedy_text"]);
    assert_eq!(line["reasoning"], "They want an image of a fox. I will describe it for the image model.");
    assert!(line["answer"].as_str().unwrap().starts_with("Here is your fox.\n<image_prompt>"));

    let ids: Vec<String> = case["prompt_ids"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let (code, out, err) = generate(&["--prompt-ids", &ids.join(",")]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["token_ids"], case["greedy_ids"]);
}

#[test]
fn generate_streams_reasoning_then_answer_to_the_terminal() {
    let model = common::fixture(common::LLM_FIXTURE);
    let (code, out, err) =
        server(&["generate", "--model", model.to_str().unwrap(), "--prompt", "Hello", "--temperature", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "[thinking]\nThe user says hello. I should greet them back.\n\n[answer]\nHello! How can I help you today?"
    );
}

#[test]
fn generate_errors_are_one_line_and_non_zero() {
    let model = common::fixture(common::LLM_FIXTURE);
    let (code, _, err) = server(&["generate", "--model", model.to_str().unwrap(), "--prompt-ids", "1,99999"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: prompt token id 99999 is outside the vocabulary (0..960)");
    let (code, _, err) = server(&["generate", "--model", "/no/such/model", "--prompt", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/model") && err.contains("missing model files"), "{err}");
    let (code, _, err) = server(&["generate", "--model", model.to_str().unwrap()]);
    assert_eq!(code, 2, "clap reports a missing --prompt: {err}");
}

#[test]
fn bench_llm_prints_one_json_line_of_timings() {
    let model = common::fixture(common::LLM_FIXTURE);
    let (code, out, err) = server(&[
        "bench",
        "llm",
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        "32",
        "--new-tokens",
        "8",
        "--runs",
        "2",
        "--turns",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    for key in ["ttft_ms", "tpot_ms", "tokens_per_s", "load_ms", "peak_rss_mb", "followup_ttft_ms", "reprefill_ttft_ms"]
    {
        assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {line}");
    }
    assert_eq!(line["new_tokens"], 8);
    assert_eq!(line["sliced_logits"], true);
    assert!(line["history_tokens"].as_u64().unwrap() > 100);
}
