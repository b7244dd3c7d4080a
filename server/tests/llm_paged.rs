//! Paged attention on the fixture model: OpenVINO's SDPAToPagedAttention applied through our C++
//! shim, KV blocks we manage. Greedy tokens equal openvino-genai's (whose CPU default is paged
//! attention), alone or several sequences in one step, and a cache cut at a diverging token, a
//! prompt started on blocks another sequence published, a shared block copied before it is
//! written and a pool that forgot prefixes to make room all give exactly the tokens of a cold run.

mod common;

use server::inference::{
    llm::{
        argmax,
        paged::{
            sequence::{Plan, Sequence},
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
    model_sized(weights, 1 << 20)
}

/// The fixture model with a KV cache of `bytes` (its blocks take 5632 bytes, 32 tokens each).
fn model_sized(weights: Placement, bytes: usize) -> (PagedModel, tempfile::TempDir) {
    common::load_runtime();
    let cache = tempfile::tempdir().unwrap();
    let options = CompileOptions { cache_dir: Some(cache.path().to_path_buf()), weights, ..Default::default() };
    let mut core = openvino::Core::new().unwrap();
    let model = PagedModel::load(&mut core, &common::fixture(common::LLM_FIXTURE), &options, bytes, 256)
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
        let Plan { reused, feed, .. } = seq.plan(prompt, &mut model.pool);
        past.push(reused);
        pending.push(feed);
    }
    let mut out = vec![vec![]; seqs.len()];
    let mut live: Vec<usize> = (0..seqs.len()).collect();
    while !live.is_empty() {
        for &i in &live {
            model.reserve(&mut seqs[i], pending[i].len()).unwrap();
        }
        let feeds: Vec<Feed> =
            live.iter().map(|&i| Feed { past: past[i], ids: &pending[i], blocks: seqs[i].blocks() }).collect();
        let logits = model.forward(&feeds).unwrap();
        let mut next_live = vec![];
        for (&i, row) in live.iter().zip(&logits) {
            let fed = std::mem::take(&mut pending[i]);
            seqs[i].append(&fed, &mut model.pool);
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

/// A long preamble (every reference prompt in turn, 126 tokens: three full blocks and part of a
/// fourth) followed by `tail`.
fn preamble_then(tail: &[u32]) -> Vec<u32> {
    let mut prompt: Vec<u32> = cases().into_iter().flat_map(|c| c.1).collect();
    prompt.extend_from_slice(tail);
    prompt
}

/// Greedy tokens for `prompt` on a model nothing else has run on.
fn cold(prompt: &[u32], max: usize) -> Vec<u32> {
    let (mut model, _cache) = model();
    greedy(&mut model, &mut [Sequence::new()], &[prompt.to_vec()], max).remove(0)
}

#[test]
fn a_prompt_started_on_published_blocks_gives_the_cold_tokens() {
    let (mut model, _cache) = model();
    let first = preamble_then(&[11, 12, 13]);
    let second = preamble_then(&[21, 22, 23, 24]);
    let mut a = Sequence::new();
    greedy(&mut model, std::slice::from_mut(&mut a), std::slice::from_ref(&first), 24);
    a.release(&mut model.pool);
    // The preamble's three full blocks stay, idle, for the next prompt that starts with them.
    assert_eq!(model.pool.idle(), 4, "the prompt's four full blocks (the reply's last is partial)");
    let mut b = Sequence::new();
    let plan = b.plan(&second, &mut model.pool);
    assert_eq!((plan.reused, plan.shared), (96, 96), "three blocks of 32 tokens taken");
    b.release(&mut model.pool);
    let got = greedy(&mut model, &mut [Sequence::new()], std::slice::from_ref(&second), 24);
    assert_eq!(got[0], cold(&second, 24));
    // The whole of a published prompt: its last token re-runs, into a copy of the shared block.
    let exact = first[..96].to_vec();
    let mut holder = Sequence::new();
    assert_eq!(holder.plan(&exact, &mut model.pool).shared, 95, "held while the next one runs");
    let got = greedy(&mut model, &mut [Sequence::new()], std::slice::from_ref(&exact), 24);
    assert_eq!(got[0], cold(&exact, 24));
}

/// Greedy tokens for each turn in order, one sequence on a model nothing else has run on: the
/// same cache writes as a shared run, without sharing. (A cache holding decoded tokens is not a
/// cold prefill's: the u8 KV cache quantises a block per write, so the reference is this.)
fn unshared(turns: &[(&[u32], usize)]) -> Vec<Vec<u32>> {
    let (mut model, _cache) = model();
    let mut seq = [Sequence::new()];
    turns.iter().map(|(prompt, max)| greedy(&mut model, &mut seq, &[prompt.to_vec()], *max).remove(0)).collect()
}

#[test]
fn a_shared_block_written_by_one_holder_is_unchanged_for_the_other() {
    let (mut model, _cache) = model();
    let prompt = preamble_then(&[31, 32]);
    // Two conversations on the same blocks (the second re-runs the last token into a copy).
    let mut seqs = [Sequence::new(), Sequence::new()];
    let first = greedy(&mut model, &mut seqs[..1], std::slice::from_ref(&prompt), 8).remove(0);
    let second = greedy(&mut model, &mut seqs[1..], std::slice::from_ref(&prompt), 8).remove(0);
    assert_eq!(first, second);
    // One regenerates from the middle of the third block, which the other still holds.
    let cut: Vec<u32> = prompt[..80].iter().copied().chain([41, 42, 43]).collect();
    let [left, right] = &mut seqs;
    let regenerated = greedy(&mut model, std::slice::from_mut(left), std::slice::from_ref(&cut), 24).remove(0);
    assert_eq!(regenerated, unshared(&[(&prompt, 8), (&cut, 24)])[1]);
    // The other goes on from its own cache, which the regeneration did not touch.
    let next: Vec<u32> = prompt.iter().chain(&second).chain(&[51, 52]).copied().collect();
    let cached = right.tokens().len();
    let went_on = greedy(&mut model, std::slice::from_mut(right), std::slice::from_ref(&next), 24).remove(0);
    assert!(cached > prompt.len(), "it kept its cache");
    assert_eq!(went_on, unshared(&[(&prompt, 8), (&next, 24)])[1]);
}

#[test]
fn prefixes_forgotten_to_make_room_leave_the_tokens_exact() {
    // Eight blocks in all (45 056 bytes): every prompt below needs most of them.
    let (mut model, _cache) = model_sized(Placement::default(), 8 * 5632);
    assert_eq!(model.pool.total(), 8);
    let prompts = [preamble_then(&[61]), preamble_then(&[71, 72]), [9, 8, 7].repeat(70), preamble_then(&[81])];
    for (i, prompt) in prompts.iter().enumerate() {
        let mut seq = Sequence::new();
        let plan = seq.plan(prompt, &mut model.pool);
        let got = greedy(&mut model, std::slice::from_mut(&mut seq), std::slice::from_ref(prompt), 40);
        assert_eq!(got[0], cold(prompt, 40), "prompt {i} (reused {})", plan.reused);
        match i {
            1 => assert_eq!(plan.shared, 96, "the preamble was still there"),
            3 => assert_eq!(plan.shared, 0, "the 210-token prompt took every idle block"),
            _ => {}
        }
        seq.release(&mut model.pool);
        assert_eq!(model.pool.free(), 8, "prompt {i}: every block given back or idle");
    }
}
