#!/usr/bin/env python3
"""Duet's chat engine against openvino-genai's LLMPipeline, side by side in one run.

Both get the same model folder, the same prompt token ids, greedy decoding with end-of-sequence
ignored, and all cores; each runs in its own process so its peak memory is its own. Prints a table
of medians (the first run is a discarded warm-up) with the ratio ours / GenAI and the target.

GenAI runs once per round for each of --genai-backends: "default" is its default backend on CPU
(paged attention: the graph Duet runs by default, converted by the same OpenVINO pass), "SDPA" its
stateful pipeline (the graph Duet runs with --llm-attention stateful). Suffixes give it Duet's own
memory settings, to show what each buys it alone: "+memory" reads the weights into memory
(ENABLE_MMAP=NO; Duet's LLM_WEIGHTS=memory), "+hugepages" runs it with glibc's malloc on huge
pages (Duet's HUGE_PAGES=true).

With --llamacpp, llama.cpp runs too (llama-cpp-python built for this CPU, the GGUF made from
the same checkpoint by llama.cpp's own converter and quantized to Q4_K_M: see
scripts/fixtures/llm_gguf.py), timed around its token stream as a user of the binding sees it.

    bench/run.sh llm                         # after scripts/make-fixtures.sh --full
    bench/run.sh llm --llamacpp              # builds llama-cpp-python and the GGUF when missing
    bench/run.sh llm --prompt-tokens 512 --new-tokens 128 --runs 3 --turns 10
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HUGE_PAGES_ENV, peak_rss_mb, require_inputs, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "data/bench-models/llm/deepseek-r1-distill-qwen-1.5b-arch-int4-cw-ov"
DEFAULT_GGUF = ROOT / "data/bench-models/llm-gguf/deepseek-r1-distill-qwen-1.5b-arch-Q4_K_M.gguf"


def bench_prompt(n, run):
    """The same ids as `server bench llm` (server/src/commands/bench.rs): a different prompt for
    every run, so GenAI's prefix cache cannot serve a run from the previous one."""
    return [3 + (i * 7919 + 13 + run * 104729) % 937 for i in range(n)]


def print_result(ttft, tpot, load_ms):
    """A reference worker's JSON line: medians of its timed runs, in the shape `server bench llm`
    prints."""
    tpot_ms = statistics.median(tpot)
    print(json.dumps({
        "ttft_ms": statistics.median(ttft),
        "tpot_ms": tpot_ms,
        "tokens_per_s": 1000 / tpot_ms,
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
    }))


def genai_worker(args):
    """Runs inside its own process: openvino-genai on the same prompt ids."""
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    started = time.perf_counter()
    # GenAI's default on CPU is its paged-attention backend (Duet's default too); "SDPA" is its
    # stateful pipeline (Duet's --llm-attention stateful).
    # "+memory": weights read into memory rather than mapped from the file, as Duet does by
    # default (LLM_WEIGHTS=memory). ("+hugepages" acts through the environment: see main.)
    name, *suffixes = args.genai_backend.split("+")
    properties = {} if name == "default" else {"ATTENTION_BACKEND": name}
    if "memory" in suffixes:
        properties["ENABLE_MMAP"] = False
    pipe = ov_genai.LLMPipeline(str(args.model), "CPU", **properties)
    load_ms = (time.perf_counter() - started) * 1000
    config = pipe.get_generation_config()
    config.max_new_tokens = args.new_tokens
    config.min_new_tokens = args.new_tokens
    config.ignore_eos = True
    config.do_sample = False
    ttft, tpot = [], []
    for run in range(args.runs + 1):
        ids = ov.Tensor(np.array([bench_prompt(args.prompt_tokens, run)], dtype=np.int64))
        result = pipe.generate(ids, config)
        metrics = result.perf_metrics
        if run > 0:
            ttft.append(metrics.get_ttft().mean)
            tpot.append(metrics.get_tpot().mean)
    print_result(ttft, tpot, load_ms)


def llamacpp_worker(args):
    """Runs inside its own process, in the Python that has llama-cpp-python: llama.cpp on the same
    prompt ids, greedy, all cores, the whole prompt in one batch. TTFT is the wait for the first
    token of the stream, time per output token the mean gap between the tokens after it."""
    from llama_cpp import Llama

    threads = os.cpu_count()
    started = time.perf_counter()
    llm = Llama(model_path=str(args.gguf), n_ctx=args.prompt_tokens + args.new_tokens + 16,
                n_batch=max(512, args.prompt_tokens), n_threads=threads, n_threads_batch=threads,
                verbose=False)
    load_ms = (time.perf_counter() - started) * 1000
    # bench/profile_decode.py samples only the last run's decoding, through perf's control fifo.
    perf = open(args.perf_control, "w") if args.perf_control else None
    ttft, tpot = [], []
    for run in range(args.runs + 1):
        ids = bench_prompt(args.prompt_tokens, run)
        begin = time.perf_counter()
        stamps = []
        # generate() never stops by itself (end-of-sequence is ignored, as for the others).
        for _ in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            stamps.append(time.perf_counter())
            if perf and run == args.runs and len(stamps) == 1:
                perf.write("enable\n")
                perf.flush()
            if len(stamps) == args.new_tokens:
                break
        if perf and run == args.runs:
            perf.write("disable\n")
            perf.flush()
        if run > 0:
            ttft.append((stamps[0] - begin) * 1000)
            tpot.append((stamps[-1] - stamps[0]) * 1000 / (len(stamps) - 1))
    print_result(ttft, tpot, load_ms)


SWEEP = [
    ("defaults (paged, LATENCY hint, u8 KV, dyn. quant. 32, 256-token chunks)", []),
    ("stateful attention (logits sliced by our IR rewrite)", ["--llm-attention", "stateful"]),
    ("stateful, logits for every position", ["--llm-attention", "stateful", "--no-slice"]),
    ("KV cache f16", ["--property", "KV_CACHE_PRECISION=f16"]),
    ("dynamic quantization off", ["--property", "DYNAMIC_QUANTIZATION_GROUP_SIZE=0"]),
    ("no PERFORMANCE_HINT", ["--property", "PERFORMANCE_HINT="]),
    ("whole prompt at once (no 256-token chunks)", ["--prefill-chunk", "0"]),
    ("no compiled-model cache", ["--no-cache"]),
    ("weights mapped from the file (LLM_WEIGHTS=mapped)", ["--llm-weights", "mapped"]),
    ("no huge pages (HUGE_PAGES=false)", ["--huge-pages", "false"]),
]


def sweep(args, common):
    results = {name: [] for name, _ in SWEEP}
    for round_ in range(args.sweep):
        for name, extra in SWEEP:
            cmd = [str(args.server), "--data-dir", str(ROOT / "data/bench"), "bench", "llm",
                   "--model", str(args.model), *common, *extra]
            results[name].append(run_child(cmd))
            print(f"  round {round_ + 1}: {name}: ttft {results[name][-1]['ttft_ms']:.0f} ms, "
                  f"tpot {results[name][-1]['tpot_ms']:.1f} ms", flush=True)
    med = lambda name, key: statistics.median(r[key] for r in results[name])
    base = SWEEP[0][0]
    print(f"\n{'setting':66} {'ttft ms':>9} {'tpot ms':>8} {'load ms':>8} {'MiB':>6}")
    for name, _ in SWEEP:
        print(f"{name:66} {med(name, 'ttft_ms'):9.0f} {med(name, 'tpot_ms'):8.1f} "
              f"{med(name, 'load_ms'):8.0f} {med(name, 'peak_rss_mb'):6.0f}")
    print(f"(medians of {args.sweep} interleaved rounds; each round: one warm-up and {args.runs} timed runs; "
          f"baseline: {base})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--server", type=Path, default=ROOT / "target/release/server")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="timed runs per round")
    p.add_argument("--rounds", type=int, default=4, help="rounds, alternating which engine goes first")
    p.add_argument("--turns", type=int, default=10, help="conversation length for the KV reuse check")
    p.add_argument("--ours-args", default="", help="extra arguments for `server bench llm`")
    p.add_argument("--sweep", type=int, metavar="ROUNDS",
                   help="instead: measure what each compile setting of ours buys, variants interleaved "
                        "over ROUNDS rounds (medians), since one-off timings on shared hosts drift")
    p.add_argument("--genai-backends", default="default,SDPA,default+memory+hugepages",
                   help="GenAI attention backends to compare against (default = its paged attention; "
                        "+memory: weights read into memory, ENABLE_MMAP=NO, like Duet's; "
                        "+hugepages: malloc on huge pages, like Duet's)")
    p.add_argument("--llamacpp", action="store_true",
                   help="also llama.cpp (Q4_K_M GGUF of the same weights, via llama-cpp-python in "
                        "$LLAMACPP_PYTHON; bench/run.sh llm sets it up)")
    p.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="the GGUF llama.cpp runs")
    p.add_argument("--genai-backend", default="default", help=argparse.SUPPRESS)
    p.add_argument("--genai-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--llamacpp-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--perf-control", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.genai_worker:
        return genai_worker(args)
    if args.llamacpp_worker:
        return llamacpp_worker(args)
    require_inputs(args)

    common = ["--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
              "--runs", str(args.runs)]
    if args.sweep:
        return sweep(args, common)
    ours_cmd = [str(args.server), "--data-dir", str(ROOT / "data/bench"), "bench", "llm",
                "--model", str(args.model), *common, *args.ours_args.split()]
    # The conversation check runs separately: its long prefills would otherwise count in the
    # memory comparison above.
    turns_cmd = [str(args.server), "--data-dir", str(ROOT / "data/bench"), "bench", "llm",
                 "--model", str(args.model), "--prompt-tokens", "16", "--new-tokens", "2", "--runs", "1",
                 "--turns", str(args.turns), *args.ours_args.split()]
    engines = [("Duet", ours_cmd, None)] + [
        (f"GenAI {b}", [sys.executable, __file__, "--genai-worker", "--genai-backend", b,
                        "--model", str(args.model), *common],
         HUGE_PAGES_ENV if "hugepages" in b.split("+") else None)
        for b in args.genai_backends.split(",")]
    if args.llamacpp:
        python = os.environ.get("LLAMACPP_PYTHON")
        if not python or not args.gguf.is_file():
            sys.exit("--llamacpp needs $LLAMACPP_PYTHON and the GGUF: run it as bench/run.sh llm --llamacpp")
        engines.append(("llama.cpp Q4_K_M", [python, __file__, "--llamacpp-worker", "--gguf", str(args.gguf),
                                             "--model", str(args.model), *common], None))
    print(f"model {args.model.name}, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, "
          f"{args.rounds} rounds x {args.runs} runs (+1 warm-up each), {os.cpu_count()} cores", flush=True)
    # Host speed drifts by 10-20% over minutes on shared machines: rotate which engine goes
    # first, round after round, and compare medians; the per-round ratios show the spread.
    results = {name: [] for name, _, _ in engines}
    for r in range(args.rounds):
        shift = r % len(engines)
        for name, cmd, env in engines[shift:] + engines[:shift]:
            results[name].append(run_child(cmd, env))
            last = results[name][-1]
            print(f"  round {r + 1} {name:13}: ttft {last['ttft_ms']:8.0f} ms, "
                  f"tpot {last['tpot_ms']:6.1f} ms, {last['peak_rss_mb']:5.0f} MiB", flush=True)
    conversation = run_child(turns_cmd) if args.turns else {}

    med = lambda rounds, key: statistics.median(r[key] for r in rounds)
    rows = [
        ("time to first token (ms)", "ttft_ms", "<= 1.00"),
        ("time per output token (ms)", "tpot_ms", "<= 1.00"),
        ("decode tokens/s", "tokens_per_s", ">= 1.00"),
        ("load (ms)", "load_ms", ""),
        ("peak memory (MiB)", "peak_rss_mb", "<= 1.10"),
    ]
    ours = results["Duet"]
    for name, _, _ in engines[1:]:
        theirs = results[name]
        print(f"\nDuet against {name}")
        print(f"{'metric':28} {'Duet':>9} {'GenAI':>9} {'ratio':>7} {'per-round ratios':>22}  target")
        for label, key, target in rows:
            a, b = med(ours, key), med(theirs, key)
            per_round = " ".join(f"{o[key] / t[key]:.2f}" for o, t in zip(ours, theirs))
            print(f"{label:28} {a:9.1f} {b:9.1f} {a / b:7.3f} {per_round:>22}  {target}")
    if conversation:
        c = conversation
        print(f"\nconversation of {c['turns']} turns ({c['history_tokens']} tokens of history), "
              f"last turn's time to first token:")
        print(f"  with the KV cache kept    {c['followup_ttft_ms']:10.1f} ms")
        print(f"  re-running the history    {c['reprefill_ttft_ms']:10.1f} ms")
        print(f"  ratio                     {c['followup_ratio']:10.3f}   target <= 0.25")
    for name, rounds in results.items():
        print(f"\n{name} rounds: {json.dumps(rounds)}")


if __name__ == "__main__":
    main()
