//! The chat engine on the fixture model: exact agreement with the upstream references, KV reuse
//! that changes nothing, fairness, cancellation, context limits, stop strings, seeds, streaming.
//! Everything runs on paged attention (the default); the stateful graph gets the exactness and
//! reuse cases too.

mod common;

use server::inference::llm::{
    files::LlmFiles, Attention, ChatMessage, Completion, EngineOptions, FinishReason, GenerateRequest, GenerationEvent,
    GenerationParams, LlmEngine, Part, Prompt, SamplingOverrides,
};
use std::time::Instant;

use common::load_runtime;

fn engine(options: EngineOptions) -> (LlmEngine, tempfile::TempDir) {
    load_runtime();
    let cache = tempfile::tempdir().unwrap();
    let mut options = options;
    options.compile.cache_dir = Some(cache.path().to_path_buf());
    // Exactness against the references holds on every CPU at f32 (LLM_PRECISION=f32); in bf16
    // two logits can tie and either engine may take either.
    options.compile.properties.extend(server::inference::cpu::llm_properties(server::inference::cpu::Precision::F32));
    let (tx, rx) = std::sync::mpsc::channel();
    let engine =
        LlmEngine::start(common::fixture(common::LLM_FIXTURE), options.clone(), move |r| tx.send(r).unwrap()).unwrap();
    let info = rx.recv().unwrap().expect("fixture model loads");
    assert!(info.sliced_logits, "the IR rewrite applies to the fixture");
    let expected = if options.attention == Attention::Stateful { Attention::Stateful } else { Attention::Paged };
    assert_eq!(info.attention, expected, "paged attention needs the shim built with the server (server/build.rs)");
    (engine, cache)
}

fn references() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(common::fixture("fixtures/reference/llm.json")).unwrap();
    let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
    refs["cases"].as_array().unwrap().clone()
}

fn messages(case: &serde_json::Value) -> Vec<ChatMessage> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams { sampling: SamplingOverrides::greedy(), max_new_tokens, ..Default::default() }
}

async fn run(engine: &LlmEngine, conversation: Option<&str>, prompt: Prompt, params: GenerationParams) -> Completion {
    let request = GenerateRequest { conversation: conversation.map(String::from), prompt, params };
    engine.generate(request).unwrap().completion().await.unwrap()
}

#[test]
fn template_and_tokenizer_match_transformers_exactly() {
    let files = LlmFiles::load(&common::fixture(common::LLM_FIXTURE)).unwrap();
    for case in references() {
        let rendered = files.template.render(&messages(&case), true).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{}", case["name"]);
        let encoded = files.tokenizer.encode(rendered, false).unwrap();
        assert_eq!(encoded.get_ids(), ids(&case["prompt_ids"]).as_slice(), "{}", case["name"]);
    }
}

#[tokio::test]
async fn greedy_generation_matches_openvino_genai_token_for_token() {
    greedy_matches_references(EngineOptions::default()).await;
}

#[tokio::test]
async fn generations_in_flight_decode_in_one_step_and_keep_their_tokens() {
    let (engine, _cache) = engine(EngineOptions::default());
    let cases = references();
    let handles: Vec<_> = cases
        .iter()
        .map(|case| {
            let prompt = Prompt::Ids(ids(&case["prompt_ids"]));
            engine.generate(GenerateRequest { conversation: None, prompt, params: greedy(48) }).unwrap()
        })
        .collect();
    let results = futures::future::join_all(handles.into_iter().map(|h| h.completion())).await;
    for (case, result) in cases.iter().zip(results) {
        assert_eq!(result.unwrap().token_ids, ids(&case["greedy_ids"]), "{}", case["name"]);
    }
    let stats = engine.stats();
    assert!(stats.batched_steps > 0 && stats.max_batch >= 2, "{stats:?}");
    // Prompts that arrived while others decoded ran their chunks in those same steps.
    assert!(stats.mixed_steps > 0, "{stats:?}");
}

/// Requests sent together start together: the engine, idle, waits a moment for the rest of a
/// burst, so the first step runs every prompt (not the first alone while the others wait) and
/// each later step decodes them all. The step counters say exactly that.
#[tokio::test]
async fn a_burst_of_requests_starts_in_one_step() {
    // A wide gap, so a busy test machine cannot split the burst; the default is 2 ms.
    let options = EngineOptions { burst_gap: std::time::Duration::from_millis(300), ..EngineOptions::default() };
    let (engine, _cache) = engine(options);
    let cases = references();
    let new_tokens = 6;
    let handles: Vec<_> = cases
        .iter()
        .map(|case| {
            let prompt = Prompt::Ids(ids(&case["prompt_ids"]));
            engine.generate(GenerateRequest { conversation: None, prompt, params: greedy(new_tokens) }).unwrap()
        })
        .collect();
    let results = futures::future::join_all(handles.into_iter().map(|h| h.completion())).await;
    for (case, result) in cases.iter().zip(results) {
        let expected: Vec<u32> = ids(&case["greedy_ids"]).into_iter().take(new_tokens).collect();
        assert_eq!(result.unwrap().token_ids, expected, "{}", case["name"]);
    }
    let steps = settled(&engine).await.steps;
    let prompt_tokens: usize = cases.iter().map(|c| ids(&c["prompt_ids"]).len()).sum();
    assert!(prompt_tokens <= EngineOptions::default().shared_prefill_chunk, "{prompt_tokens} prompt tokens");
    // One step for all prompts (each gives its first token), then one per further token.
    assert_eq!(steps.count, new_tokens as u64, "{steps:?}");
    assert_eq!(steps.prompt_tokens, prompt_tokens as u64, "{steps:?}");
    assert_eq!(steps.prompts_finished, cases.len() as u64, "{steps:?}");
    assert_eq!(steps.decode_tokens, (cases.len() * (new_tokens - 1)) as u64, "{steps:?}");
}

/// A prompt that arrives while another conversation replies is run in small chunks inside that
/// conversation's decoding steps, and both still give GenAI's tokens.
#[tokio::test]
async fn a_new_prompt_rides_along_decoding_steps_in_chunks() {
    let chunk = 8;
    let (engine, _cache) = engine(EngineOptions { shared_prefill_chunk: chunk, ..EngineOptions::default() });
    let cases = references();
    let longest = cases.iter().max_by_key(|c| ids(&c["prompt_ids"]).len()).unwrap();
    let prompt_len = ids(&longest["prompt_ids"]).len();
    assert!(prompt_len > 3 * chunk, "the longest reference prompt has {prompt_len} tokens");
    let first = &cases[0];
    let start = |case: &serde_json::Value| {
        let prompt = Prompt::Ids(ids(&case["prompt_ids"]));
        engine.generate(GenerateRequest { conversation: None, prompt, params: greedy(48) }).unwrap()
    };
    let mut replying = start(first);
    // Wait until it is decoding, then bring the long prompt.
    loop {
        match replying.next().await.expect("events until done") {
            GenerationEvent::Delta { .. } => break,
            GenerationEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    let newcomer = start(longest).completion().await.unwrap();
    assert_eq!(newcomer.token_ids, ids(&longest["greedy_ids"]), "{}", longest["name"]);
    assert_eq!(replying.completion().await.unwrap().token_ids, ids(&first["greedy_ids"]), "{}", first["name"]);
    let stats = engine.stats();
    // Each chunk gave way to the decoding token (7 prompt tokens a step), and every one but
    // possibly the last ran beside a decoding step.
    assert!(stats.mixed_steps as usize >= prompt_len / (chunk - 1) - 1, "{prompt_len} tokens: {stats:?}");
}

#[tokio::test]
async fn the_stateful_graph_matches_the_references_and_reuses_its_cache_too() {
    let stateful = || EngineOptions { attention: Attention::Stateful, ..Default::default() };
    greedy_matches_references(stateful()).await;
    follow_up_equals_cold(stateful()).await;
}

async fn greedy_matches_references(options: EngineOptions) {
    let (engine, _cache) = engine(options);
    for case in references() {
        let expected = ids(&case["greedy_ids"]);
        let from_messages = run(&engine, None, Prompt::Messages(messages(&case)), greedy(48)).await;
        assert_eq!(from_messages.token_ids, expected, "{}", case["name"]);
        assert_eq!(from_messages.prompt_tokens, ids(&case["prompt_ids"]).len());
        let from_ids = run(&engine, None, Prompt::Ids(ids(&case["prompt_ids"])), greedy(48)).await;
        assert_eq!(from_ids.token_ids, expected, "{}", case["name"]);
        // GenAI ends with the EOS id when the model stopped; so do we, and then say why.
        let stopped = expected.len() < 48;
        assert_eq!(from_ids.finish_reason, if stopped { FinishReason::Eos } else { FinishReason::Length });
    }
}

#[tokio::test]
async fn reasoning_and_answer_are_split_and_streamed_in_order() {
    let (engine, _cache) = engine(EngineOptions::default());
    let case = &references()[0]; // "Hello": reasoning, </think>, answer
    let request = GenerateRequest { conversation: None, prompt: Prompt::Messages(messages(case)), params: greedy(48) };
    let mut handle = engine.generate(request).unwrap();
    let mut streamed: Vec<(Part, String)> = Vec::new();
    let done = loop {
        match handle.next().await.unwrap() {
            GenerationEvent::Started { prompt_tokens, reused_tokens, .. } => {
                assert_eq!((prompt_tokens, reused_tokens), (6, 0))
            }
            GenerationEvent::Delta { part, text } => match streamed.last_mut() {
                Some((p, t)) if *p == part => t.push_str(&text),
                _ => streamed.push((part, text)),
            },
            GenerationEvent::Done(c) => break c,
            GenerationEvent::Failed(e) => panic!("{e}"),
        }
    };
    assert_eq!(done.reasoning, "The user says hello. I should greet them back.");
    assert_eq!(done.answer, "Hello! How can I help you today?");
    assert_eq!(
        streamed,
        vec![
            (Part::Reasoning, "The user says hello. I should greet them back.\n".to_string()),
            (Part::Answer, "Hello! How can I help you today?".to_string()),
        ]
    );
    assert_eq!(done.text, case["greedy_text"].as_str().unwrap());
}

#[tokio::test]
async fn a_follow_up_turn_reuses_the_cache_and_yields_exactly_the_cold_tokens() {
    follow_up_equals_cold(EngineOptions::default()).await;
}

async fn follow_up_equals_cold(options: EngineOptions) {
    let (engine, _cache) = engine(options);
    let turn1 = vec![ChatMessage::new("user", "Hello")];
    let first = run(&engine, Some("conv"), Prompt::Messages(turn1.clone()), greedy(48)).await;
    assert_eq!(first.finish_reason, FinishReason::Eos);
    // The service sends back the answer only; the reply's reasoning is in the cache but masked.
    let mut turn2 = turn1.clone();
    turn2.push(ChatMessage::new("assistant", first.answer.clone()));
    turn2.push(ChatMessage::new("user", "Draw a cat"));
    let warm = run(&engine, Some("conv"), Prompt::Messages(turn2.clone()), greedy(48)).await;
    let cold = run(&engine, None, Prompt::Messages(turn2.clone()), greedy(48)).await;
    assert_eq!(warm.token_ids, cold.token_ids);
    assert!(warm.reused_tokens >= 4, "reused {}", warm.reused_tokens);
    assert_eq!(cold.reused_tokens, 0);
    assert!(warm.answer.contains("<image_prompt>"), "{}", warm.answer);

    // Regenerating the same turn, and editing an earlier message, also match cold runs.
    let again = run(&engine, Some("conv"), Prompt::Messages(turn2.clone()), greedy(48)).await;
    assert_eq!(again.token_ids, cold.token_ids);
    assert_eq!(again.reused_tokens, again.prompt_tokens - 1);
    let mut edited = turn2.clone();
    edited[0].content = "hi".into();
    let warm_edit = run(&engine, Some("conv"), Prompt::Messages(edited.clone()), greedy(48)).await;
    let cold_edit = run(&engine, None, Prompt::Messages(edited), greedy(48)).await;
    assert_eq!(warm_edit.token_ids, cold_edit.token_ids);
    assert!(warm_edit.reused_tokens < warm.reused_tokens);
}

#[tokio::test]
async fn an_evicted_conversation_is_run_again_transparently() {
    let (engine, _cache) = engine(EngineOptions { max_sessions: 1, ..Default::default() });
    let turn = |text: &str| vec![ChatMessage::new("user", text)];
    run(&engine, Some("a"), Prompt::Messages(turn("Hello")), greedy(8)).await;
    run(&engine, Some("b"), Prompt::Messages(turn("hi")), greedy(8)).await; // evicts "a"
    let a = run(&engine, Some("a"), Prompt::Messages(turn("Hello")), greedy(8)).await;
    assert_eq!(a.reused_tokens, 0, "a was evicted");
    let b = run(&engine, Some("b"), Prompt::Messages(turn("hi")), greedy(8)).await; // "b" evicted by "a"
    assert_eq!(b.reused_tokens, 0);
    let b_again = run(&engine, Some("b"), Prompt::Messages(turn("hi")), greedy(8)).await;
    assert!(b_again.reused_tokens > 0);
    assert_eq!(b_again.token_ids, b.token_ids);
}

#[tokio::test]
async fn a_full_block_pool_evicts_idle_conversations_then_refuses_clearly() {
    // The fixture's blocks take 5632 bytes (32 tokens): 24 000 bytes is a pool of 4 blocks, while
    // the idle-conversation budget (128 bytes a token) would keep 187 tokens.
    let options = EngineOptions { max_context: Some(128), max_session_bytes: 24_000, ..Default::default() };
    let (engine, _cache) = engine(options);
    let turn = |text: &str| Prompt::Messages(vec![ChatMessage::new("user", text)]);
    let params = GenerationParams { ignore_eos: true, ..greedy(60) };
    let a = run(&engine, Some("a"), turn("Hello"), params.clone()).await; // ~70 tokens: 3 blocks
    let held = settled(&engine).await;
    assert_eq!((held.kept_conversations, held.kv_tokens_allocated), (1, 4 * 32), "{held:?}");
    let a_tokens = a.prompt_tokens + a.completion_tokens;
    assert!(held.kv_tokens_used >= a_tokens - 1 && held.kv_tokens_used <= 3 * 32, "{a_tokens} tokens: {held:?}");
    let b = run(&engine, Some("b"), turn("Tell me a joke"), params.clone()).await; // needs "a"'s blocks
    assert_eq!(b.completion_tokens, 60);
    let b_cold = run(&engine, None, turn("Tell me a joke"), params.clone()).await;
    assert_eq!(b.token_ids, b_cold.token_ids, "evicting under pressure changes nothing");
    let a_again = run(&engine, Some("a"), turn("Hello"), params.clone()).await;
    assert_eq!(a_again.reused_tokens, 0, "a was evicted to make room");
    assert_eq!(a_again.token_ids, a.token_ids);
    // Two at once cannot both fit and nothing idle is left to evict: one fails, naming the budget.
    let long = GenerationParams { ignore_eos: true, ..greedy(100) };
    let start = |text: &str| {
        let request = GenerateRequest { conversation: None, prompt: turn(text), params: long.clone() };
        engine.generate(request).unwrap().completion()
    };
    let (x, y) = tokio::join!(start("Hello"), start("hi"));
    let failed: Vec<String> = [x, y].into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("KV cache is full") && failed[0].contains("LLM_KV_CACHE_MB"), "{}", failed[0]);
    // The failed one gave its blocks back: a later request still runs.
    assert_eq!(run(&engine, None, turn("hi"), params).await.completion_tokens, 60);
    let after = settled(&engine).await;
    assert!(after.evicted_for_room >= 1 && after.kv_tokens_used == 0, "{after:?}");
}

/// The engine's published figures once it has nothing in flight (it publishes after its last
/// unit, a moment after the caller heard the end).
async fn settled(engine: &LlmEngine) -> server::inference::llm::EngineStats {
    for _ in 0..200 {
        let stats = engine.stats();
        if stats.running == 0 {
            return stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the engine still reports work in flight: {:?}", engine.stats());
}

#[tokio::test]
async fn conversations_in_flight_advance_together() {
    let (engine, _cache) = engine(EngineOptions::default());
    let params = GenerationParams { ignore_eos: true, ..greedy(40) };
    let start = |text: &str| {
        let prompt = Prompt::Messages(vec![ChatMessage::new("user", text)]);
        engine.generate(GenerateRequest { conversation: None, prompt, params: params.clone() }).unwrap()
    };
    let (a, b) = (start("Hello"), start("Tell me a joke"));
    let times = |mut h: server::inference::llm::GenerationHandle| async move {
        let (mut first, mut last) = (None, Instant::now());
        while let Some(event) = h.next().await {
            match event {
                GenerationEvent::Delta { .. } => {
                    first.get_or_insert_with(Instant::now);
                }
                GenerationEvent::Done(c) => {
                    assert_eq!(c.completion_tokens, 40);
                    last = Instant::now();
                    break;
                }
                GenerationEvent::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
        (first.unwrap(), last)
    };
    let ((a_first, a_done), (b_first, b_done)) = tokio::join!(times(a), times(b));
    // Neither finishes before the other has started producing tokens.
    assert!(b_first < a_done && a_first < b_done);
}

#[tokio::test]
async fn cancelling_stops_within_a_token_and_dropping_the_handle_cancels() {
    let (engine, _cache) = engine(EngineOptions::default());
    let params = GenerationParams { ignore_eos: true, ..greedy(500) };
    let prompt = Prompt::Messages(vec![ChatMessage::new("user", "Count to five")]);
    let mut handle = engine
        .generate(GenerateRequest { conversation: None, prompt: prompt.clone(), params: params.clone() })
        .unwrap();
    loop {
        if let GenerationEvent::Delta { .. } = handle.next().await.unwrap() {
            handle.cancel();
            break;
        }
    }
    let done = handle.completion().await.unwrap();
    assert_eq!(done.finish_reason, FinishReason::Cancelled);
    assert!(done.completion_tokens < 20, "{} tokens after cancel", done.completion_tokens);

    // A dropped handle (a client that went away) frees the engine for the next request.
    drop(engine.generate(GenerateRequest { conversation: None, prompt: prompt.clone(), params }).unwrap());
    let next = run(&engine, None, prompt, greedy(4)).await;
    assert_eq!(next.completion_tokens, 4);
}

#[tokio::test]
async fn long_conversations_drop_their_oldest_turns_and_too_long_prompts_fail() {
    let (engine, _cache) = engine(EngineOptions { max_context: Some(64), ..Default::default() });
    let mut conversation = Vec::new();
    for i in 0..6 {
        conversation.push(ChatMessage::new("user", format!("What is {i} + {i}?")));
        conversation.push(ChatMessage::new("assistant", format!("{i} + {i} = {}.", 2 * i)));
    }
    conversation.push(ChatMessage::new("user", "Hello"));
    let done = run(&engine, None, Prompt::Messages(conversation), greedy(8)).await;
    assert!(done.dropped_messages >= 2 && done.dropped_messages % 2 == 0, "{}", done.dropped_messages);
    assert!(done.prompt_tokens <= 56);

    let long = ChatMessage::new("user", "word ".repeat(200));
    let request = GenerateRequest { conversation: None, prompt: Prompt::Messages(vec![long]), params: greedy(8) };
    let err = engine.generate(request).unwrap().completion().await.unwrap_err().to_string();
    assert!(err.contains("tokens but at most 56 fit"), "{err}");
}

#[tokio::test]
async fn out_of_vocabulary_prompt_ids_are_refused() {
    let (engine, _cache) = engine(EngineOptions::default());
    let request = GenerateRequest { conversation: None, prompt: Prompt::Ids(vec![5, 151646]), params: greedy(4) };
    let err = engine.generate(request).unwrap().completion().await.unwrap_err().to_string();
    assert_eq!(err, "prompt token id 151646 is outside the vocabulary (0..960)");
    let request = GenerateRequest { conversation: None, prompt: Prompt::Ids(vec![]), params: greedy(4) };
    let err = engine.generate(request).unwrap().completion().await.unwrap_err().to_string();
    assert_eq!(err, "the prompt is empty");
}

#[tokio::test]
async fn stop_strings_end_generation_before_the_string() {
    let (engine, _cache) = engine(EngineOptions::default());
    let prompt = Prompt::Messages(vec![ChatMessage::new("user", "Draw a red fox in the snow")]);
    let params = GenerationParams { stop: vec!["<image_prompt>".into()], ..greedy(48) };
    let done = run(&engine, None, prompt, params).await;
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.answer, "Here is your fox.\n");
    assert!(!done.text.contains("<image_prompt"));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_sample() {
    let (engine, _cache) = engine(EngineOptions::default());
    let sampled = |seed| GenerationParams {
        sampling: SamplingOverrides {
            temperature: Some(1.5),
            top_p: Some(1.0),
            seed: Some(seed),
            ..Default::default()
        },
        ignore_eos: true,
        ..greedy(24)
    };
    let prompt = || Prompt::Messages(vec![ChatMessage::new("user", "Tell me a joke")]);
    let a = run(&engine, None, prompt(), sampled(1)).await;
    let b = run(&engine, None, prompt(), sampled(1)).await;
    let c = run(&engine, None, prompt(), sampled(2)).await;
    assert_eq!(a.token_ids, b.token_ids);
    assert_ne!(a.token_ids, c.token_ids);
    assert_eq!(a.seed, 1);
}

#[tokio::test]
async fn streamed_text_equals_decoding_all_tokens_at_once() {
    let (engine, _cache) = engine(EngineOptions::default());
    let files = LlmFiles::load(&common::fixture(common::LLM_FIXTURE)).unwrap();
    let mut multibyte = 0;
    // Sampling at high temperature visits byte tokens that split multi-byte characters.
    for seed in 0..8 {
        let params = GenerationParams {
            sampling: SamplingOverrides {
                temperature: Some(3.0),
                top_p: Some(1.0),
                seed: Some(seed),
                ..Default::default()
            },
            ignore_eos: true,
            ..greedy(40)
        };
        let prompt = Prompt::Messages(vec![ChatMessage::new("user", "Écris un haïku sur le café ☕ et 你好 🐱")]);
        let mut handle = engine.generate(GenerateRequest { conversation: None, prompt, params }).unwrap();
        let mut streamed = String::new();
        let done = loop {
            match handle.next().await.unwrap() {
                GenerationEvent::Delta { text, .. } => streamed.push_str(&text),
                GenerationEvent::Done(c) => break c,
                GenerationEvent::Failed(e) => panic!("{e}"),
                _ => {}
            }
        };
        let whole = files.tokenizer.decode(&done.token_ids, true).unwrap();
        // The splitter trims whitespace around </think>; compare the text it saw.
        assert_eq!(done.text, whole, "seed {seed}");
        let squash = |s: &str| s.split_whitespace().collect::<String>().replace("</think>", "");
        assert_eq!(squash(&streamed), squash(&whole), "seed {seed}");
        multibyte += whole.chars().filter(|c| c.len_utf8() > 1 && *c != '\u{FFFD}').count();
    }
    assert!(multibyte > 0, "no multi-byte character was generated: the test checked nothing");
}

#[tokio::test]
async fn a_new_conversation_with_a_known_system_prompt_runs_only_what_is_new() {
    let (warm, _cache) = engine(EngineOptions::default());
    let system = "You are Duet, a helpful assistant who answers briefly and plainly. ".repeat(6);
    let chat = |text: &str| Prompt::Messages(vec![ChatMessage::new("system", &system), ChatMessage::new("user", text)]);
    let params = GenerationParams { ignore_eos: true, ..greedy(12) };
    let first = run(&warm, Some("first"), chat("Hello"), params.clone()).await;
    assert!(first.prompt_tokens > 96, "the system prompt spans several blocks: {}", first.prompt_tokens);
    assert_eq!(first.reused_tokens, 0);
    let second = run(&warm, Some("second"), chat("Tell me a joke"), params.clone()).await;
    assert!(second.reused_tokens >= 64, "the system prompt's full blocks are shared: {}", second.reused_tokens);
    assert!(second.reused_tokens < second.prompt_tokens - 2, "the new message runs");
    // One-off requests (no conversation key) share it too, and the first one's blocks stay idle.
    let oneoff = run(&warm, None, chat("Tell me a joke"), params.clone()).await;
    assert!(oneoff.reused_tokens >= second.reused_tokens, "{}", oneoff.reused_tokens);
    let stats = settled(&warm).await;
    assert!(stats.shared_prefix_tokens >= (second.reused_tokens + oneoff.reused_tokens) as u64, "{stats:?}");
    // Shared blocks change nothing: the same turn on an engine that has run nothing else.
    let (cold_engine, _cold_cache) = engine(EngineOptions::default());
    let cold = run(&cold_engine, None, chat("Tell me a joke"), params).await;
    assert_eq!(cold.reused_tokens, 0);
    assert_eq!((second.token_ids.clone(), oneoff.token_ids), (cold.token_ids.clone(), cold.token_ids));
}

#[tokio::test]
async fn with_prefix_sharing_off_a_conversation_reuses_only_its_own_cache() {
    let (unshared, _cache) = engine(EngineOptions { share_prefixes: false, ..Default::default() });
    let system = "You are Duet, a helpful assistant who answers briefly and plainly. ".repeat(6);
    let chat = |text: &str| Prompt::Messages(vec![ChatMessage::new("system", &system), ChatMessage::new("user", text)]);
    let params = GenerationParams { ignore_eos: true, ..greedy(8) };
    run(&unshared, Some("first"), chat("Hello"), params.clone()).await;
    let second = run(&unshared, Some("second"), chat("Tell me a joke"), params.clone()).await;
    assert_eq!(second.reused_tokens, 0, "another conversation's blocks are not taken");
    let again = run(&unshared, Some("second"), chat("Tell me a joke"), params).await;
    assert!(again.reused_tokens > 0, "its own cache still serves it");
    assert_eq!(settled(&unshared).await.shared_prefix_tokens, 0);
}
