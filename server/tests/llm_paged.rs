//! Paged attention on the fixture model: OpenVINO's SDPAToPagedAttention applied through our C++
//! shim, KV blocks we manage. Greedy tokens equal openvino-genai's (whose CPU default is paged
//! attention), alone or several sequences in one step, and a cache cut at a diverging token gives
//! exactly the tokens of a cold run.

mod common;

use server::inference::{
    llm::{
        argmax,
        paged::{
            blocks::{Plan, Sequence},
            Feed, PagedModel,
        },
        CompileOptions,
    },
    weights::Placement,
};

const EOS: u32 = 940;

fn model() -> (PagedModel, tempfile::TempDir) {
    model_with(Placement::default())
}

fn model_with(weights: Placement) -> (PagedModel, tempfile::TempDir) {
    common::load_runtime();
    let cache = tempfile::tempdir().unwrap();
    let options = CompileOptions { cache_dir: Some(cache.path().to_path_buf()), weights, ..Default::default() };
    let mut core = openvino::Core::new().unwrap();
    let model = PagedModel::load(&mut core, &common::fixture(common::LLM_FIXTURE), &options, 1 << 20, 256)
        .expect("the fixture model converts to paged attention (needs the shim: see server/build.rs)");
    (model, cache)
}

fn cases() -> Vec<(String, Vec<u32>, Vec<u32>)> {
    let text = std::fs::read_to_string(common::fixture("fixtures/reference/llm.json")).unwrap();
    let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
    refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), ids(&c["prompt_ids"]), ids(&c["greedy_ids"])))
        .collect()
}

/// Greedy decoding of several sequences at once, each from its plan; stops each at EOS or `max`.
fn greedy(model: &mut PagedModel, seqs: &mut [Sequence], prompts: &[Vec<u32>], max: usize) -> Vec<Vec<u32>> {
    let mut pending: Vec<Vec<u32>> = vec![];
    let mut past = vec![];
    for (seq, prompt) in seqs.iter_mut().zip(prompts) {
        let Plan { reused, feed } = seq.plan(prompt, &mut model.pool);
        past.push(reused);
        pending.push(feed);
    }
    let mut out = vec![vec![]; seqs.len()];
    let mut live: Vec<usize> = (0..seqs.len()).collect();
    while !live.is_empty() {
        for &i in &live {
            seqs[i].reserve(pending[i].len(), &mut model.pool).unwrap();
        }
        let feeds: Vec<Feed> =
            live.iter().map(|&i| Feed { past: past[i], ids: &pending[i], blocks: seqs[i].blocks() }).collect();
        let logits = model.forward(&feeds).unwrap();
        let mut next_live = vec![];
        for (&i, row) in live.iter().zip(&logits) {
            let fed = std::mem::take(&mut pending[i]);
            seqs[i].append(&fed, &model.pool);
            past[i] += fed.len();
            let token = argmax(row) as u32;
            out[i].push(token);
            if token != EOS && out[i].len() < max {
                pending[i] = vec![token];
                next_live.push(i);
            }
        }
        live = next_live;
    }
    out
}

#[test]
fn greedy_tokens_match_openvino_genai_one_sequence_at_a_time() {
    let (mut model, _cache) = model();
    for (name, prompt, expected) in cases() {
        let mut seq = [Sequence::new()];
        let got = greedy(&mut model, &mut seq, &[prompt], 48);
        assert_eq!(got[0], expected, "{name}");
        seq[0].release(&mut model.pool);
        assert_eq!(model.pool.free(), model.pool.total(), "{name}: every block given back");
    }
}

#[test]
fn sequences_in_one_step_get_the_tokens_they_get_alone() {
    let (mut model, _cache) = model();
    let cases = cases();
    assert!(cases.len() >= 2, "the references hold several prompts");
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.1.clone()).collect();
    let mut seqs: Vec<Sequence> = cases.iter().map(|_| Sequence::new()).collect();
    let got = greedy(&mut model, &mut seqs, &prompts, 48);
    for ((name, _, expected), got) in cases.iter().zip(got) {
        assert_eq!(&got, expected, "{name}");
    }
}

#[test]
fn a_cache_cut_where_the_prompt_diverges_gives_the_cold_tokens() {
    let (mut model, _cache) = model();
    let (_, first, _) = cases().remove(0);
    // Turn one, then a second prompt that keeps only part of the first (as an edited message does).
    let mut warm = [Sequence::new()];
    let reply = greedy(&mut model, &mut warm, std::slice::from_ref(&first), 12);
    let mut second = first[..first.len() - 2].to_vec();
    second.extend_from_slice(&reply[0][..4]);
    second.extend_from_slice(&first[first.len() - 3..]);
    let warm_tokens = greedy(&mut model, &mut warm, std::slice::from_ref(&second), 24);
    let mut cold = [Sequence::new()];
    let cold_tokens = greedy(&mut model, &mut cold, &[second], 24);
    assert_eq!(warm_tokens, cold_tokens);
}

/// Whether this process maps the fixture model's weights file.
fn weights_file_mapped() -> bool {
    let bin = common::fixture(common::LLM_FIXTURE).join("openvino_model.bin").canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| l.ends_with(bin.to_str().unwrap()))
}

#[test]
fn weights_read_into_memory_or_mapped_give_the_same_tokens() {
    // Every other test here reads the weights into memory (the default), so none maps the file.
    let (mut in_memory, _cache) = model_with(Placement::Memory);
    assert!(!weights_file_mapped(), "weights read into memory leave no mapping of the file");
    let (name, prompt, expected) = cases().remove(0);
    let got = greedy(&mut in_memory, &mut [Sequence::new()], std::slice::from_ref(&prompt), 48);
    assert_eq!(got[0], expected, "{name}, weights in memory");
    drop(in_memory);
    let (mut mapped, _cache) = model_with(Placement::Mapped);
    assert!(weights_file_mapped(), "LLM_WEIGHTS=mapped maps the file");
    let got = greedy(&mut mapped, &mut [Sequence::new()], &[prompt], 48);
    assert_eq!(got[0], expected, "{name}, weights mapped");
}
