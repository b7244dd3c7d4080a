#!/usr/bin/env python3
"""openvino-genai's ContinuousBatchingPipeline (paged attention, continuous batching, optional
prefix caching) under the serving benchmark's request stream (bench/serve_trace.py): the peer
Duet's engine is measured against in issue 27. Closed loop (`--users N`: each user sends its next
request when the last one ends) or open loop (`--rate R`: Poisson arrivals). Greedy, end of
sequence ignored (every request makes exactly its `max_new_tokens`), one process, stepping the
pipeline itself so each token's arrival time is seen. Prints one JSON line: output tokens/s,
requests/s, TTFT (queue time included) and each request's time per output token (P50/P95/P99,
ms), and peak memory.

    .venv-fixtures/bin/python bench/serve_genai.py --users 4 --requests 16
    .venv-fixtures/bin/python bench/serve_genai.py --rate 0.2 --requests 32 --prefix-caching
This is the peer's half; Duet's half (the same trace through its engine) comes with issue 27."""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb  # noqa: E402
from serve_trace import arrivals, percentiles, trace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "data/bench-models/llm/deepseek-r1-distill-qwen-1.5b-arch-int4-cw-ov"


def step_means(steps):
    """What the pipeline's steps held and cost on average (Duet's `server bench serve` prints the
    same). GenAI does not say how many prompt tokens a step ran: the sequences it scheduled that
    gave no decoding token were prompts (those that finished gave their first token)."""
    n = max(1, len(steps))
    return {
        "count": len(steps),
        "mean_ms": sum(s[0] for s in steps) / n,
        "decode_tokens": sum(s[2] for s in steps) / n,
        "prompt_sequences": sum(s[1] - s[2] for s in steps) / n,
        "first_tokens": sum(s[3] for s in steps) / n,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--users", type=int, help="closed loop: this many users at once")
    mode.add_argument("--rate", type=float, help="open loop: Poisson arrivals, requests/s")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--trace", type=Path, help="the requests as bench/serve.py wrote them (else made here)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink prompt and output lengths (quick checks)")
    parser.add_argument("--shared-prefix", type=int, default=0, help="tokens every prompt starts with")
    parser.add_argument("--prefix-caching", action="store_true")
    parser.add_argument("--cache-gb", type=float, default=2.0, help="KV cache size (Duet: LLM_KV_CACHE_MB)")
    parser.add_argument("--kv-precision", default="u8", help="KV cache precision (Duet's default: u8)")
    parser.add_argument("--batched-tokens", type=int, default=256, help="tokens per step (prompt chunks + decodes)")
    args = parser.parse_args()
    if not args.model.is_dir():
        sys.exit(f"no model at {args.model}: run scripts/make-fixtures.sh --full first")

    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    requests = (json.loads(args.trace.read_text()) if args.trace
                else trace(args.requests, args.seed, args.shared_prefix, scale=args.scale))
    scheduler = ov_genai.SchedulerConfig()
    scheduler.cache_size = max(1, int(round(args.cache_gb)))
    scheduler.enable_prefix_caching = args.prefix_caching
    scheduler.max_num_batched_tokens = args.batched_tokens
    scheduler.dynamic_split_fuse = True
    started = time.perf_counter()
    pipe = ov_genai.ContinuousBatchingPipeline(str(args.model), scheduler, "CPU", {"KV_CACHE_PRECISION": args.kv_precision})
    load_s = time.perf_counter() - started

    def config(n):
        c = ov_genai.GenerationConfig()
        c.max_new_tokens = c.min_new_tokens = n
        c.ignore_eos = True
        c.do_sample = False
        return c

    # A first inference pays for one-time work (kernels, allocations): not a request's cost.
    warm = pipe.add_request(10**9, ov.Tensor(np.array([list(range(3, 67))], dtype=np.int64)), config(2))
    while warm.get_status() == ov_genai.GenerationStatus.RUNNING:
        pipe.step()
    due = None
    if args.rate:
        due = [r["arrival_s"] for r in requests] if "arrival_s" in requests[0] else arrivals(len(requests), args.rate, args.seed)
    pending = list(range(len(requests)))
    live = {}  # request index -> (handle, submitted at, tokens seen, first token at, last token at)
    ttft, tpot, done_tokens = [], [], 0
    ttft_each = [None] * len(requests)
    steps = []  # each step: ms, sequences scheduled, decoding tokens, first tokens
    t0 = time.perf_counter()
    while pending or live:
        now = time.perf_counter() - t0
        while pending and (due[pending[0]] <= now if due else len(live) < args.users):
            i = pending.pop(0)
            r = requests[i]
            ids = ov.Tensor(np.array([r["prompt_ids"]], dtype=np.int64))
            submitted = (due[i] if due else now)
            live[i] = [pipe.add_request(i, ids, config(r["max_new_tokens"])), submitted, 0, None, None]
        if not live:
            time.sleep(max(0.0, due[pending[0]] - now))
            continue
        step_started = time.perf_counter()
        pipe.step()
        now = time.perf_counter() - t0
        steps.append([(time.perf_counter() - step_started) * 1000, pipe.get_metrics().scheduled_requests, 0, 0])
        for i, entry in list(live.items()):
            handle = entry[0]
            if handle.can_read():
                outputs = handle.read()
                new = sum(len(o.generated_ids) for o in outputs.values())
                if new:
                    first = entry[3] is None
                    steps[-1][3] += first
                    steps[-1][2] += new - first
                    if entry[3] is None:
                        entry[3] = now
                        ttft.append((now - entry[1]) * 1000)
                        ttft_each[i] = ttft[-1]
                    entry[2] += new
                    entry[4] = now
            if handle.get_status() != ov_genai.GenerationStatus.RUNNING:
                done_tokens += entry[2]
                if entry[2] > 1:
                    tpot.append((entry[4] - entry[3]) * 1000 / (entry[2] - 1))
                del live[i]
    elapsed = time.perf_counter() - t0
    print(json.dumps({
        "engine": "genai-cb", "mode": f"users={args.users}" if args.users else f"rate={args.rate}",
        "requests": len(requests), "seconds": elapsed, "load_s": load_s,
        "output_tokens_per_s": done_tokens / elapsed, "requests_per_s": len(requests) / elapsed,
        # Queue time is inside TTFT: the pipeline does not say when it first schedules a request.
        "ttft_ms": percentiles(ttft), "tpot_ms": percentiles(tpot), "ttft_each_ms": ttft_each,
        "peak_rss_mb": peak_rss_mb(), "prefix_caching": args.prefix_caching, "steps": step_means(steps),
    }))


if __name__ == "__main__":
    main()
