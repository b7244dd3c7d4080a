#!/usr/bin/env python3
"""The serving benchmark (issue 27): the same request stream (bench/serve_trace.py) through
Duet's chat engine (`server bench serve`) and openvino-genai's ContinuousBatchingPipeline
(bench/serve_genai.py), each in its own process, alternating, on the same model folder; prints
output tokens/s, requests/s, TTFT and time per output token P50/P95 and peak memory with the ratio
Duet / GenAI for every closed-loop level (`--users 1,4,8,16`) and, with `--rate`, an open loop.

    bench/run.sh serve --users 1,4 --requests 16          # after scripts/make-fixtures.sh --full
    bench/run.sh serve --rate 0.3 --requests 32
    bench/run.sh serve --users "" --long-burst 4 --each   # 4 long prompts beside 4 replies
Run on an idle machine."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_trace import arrivals, long_burst, prefix_trace, trace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "target/release/server"
PYTHON = ROOT / ".venv-fixtures/bin/python"
DEFAULT_MODEL = ROOT / "data/bench-models/llm/deepseek-r1-distill-qwen-1.5b-arch-int4-cw-ov"


def last_json(cmd):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--users", default="1,4", help="closed-loop levels, comma-separated")
    parser.add_argument("--rate", type=float, help="also an open loop at this many requests/s")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--shared-prefix", type=int, default=0)
    parser.add_argument("--prefix-check", type=int, metavar="TOKENS",
                        help="instead: conversations one after another, all opening with the same TOKENS-token "
                             "system prompt; the first runs it cold, the rest find it cached (GenAI with prefix caching)")
    parser.add_argument("--long-burst", type=int, metavar="N",
                        help="also: N replies of 400 tokens, then N 900-token prompts arriving at once 3 s later")
    parser.add_argument("--each", action="store_true", help="also print every request's TTFT, Duet beside GenAI")
    args = parser.parse_args()
    if not args.model.is_dir():
        sys.exit(f"no model at {args.model}: run scripts/make-fixtures.sh --full first")
    if args.prefix_check:
        return prefix_check(args)
    requests = trace(args.requests, args.seed, args.shared_prefix, scale=args.scale)
    runs = [("users", int(n)) for n in args.users.split(",") if n.strip()]
    if args.rate:
        for r, at in zip(requests, arrivals(len(requests), args.rate, args.seed)):
            r["arrival_s"] = at
        runs.append(("rate", args.rate))
    traces = {"main": requests}
    if args.long_burst:
        traces["burst"] = long_burst(args.long_burst)
        runs.append(("burst", args.long_burst))
    files = {}
    for name, reqs in traces.items():
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(reqs, f)
            files[name] = f.name
    rows = []
    try:
        for kind, value in runs:
            trace_file = files["burst" if kind == "burst" else "main"]
            duet_cmd = [str(SERVER), "bench", "serve", "--model", str(args.model), "--trace", trace_file]
            genai_cmd = [str(PYTHON), "bench/serve_genai.py", "--model", str(args.model), "--trace", trace_file]
            if kind == "users":
                duet_cmd += ["--users", str(value)]
                genai_cmd += ["--users", str(value)]
            else:
                # Open loop: the arrival times are in the trace (the rate only names the run).
                genai_cmd += ["--rate", str(value)]
            print(f"==> {kind} {value}: Duet, then GenAI", flush=True)
            rows.append((f"{kind}={value}", last_json(duet_cmd), last_json(genai_cmd)))
    finally:
        for f in files.values():
            os.unlink(f)
    print(f"\n{len(requests)} requests; ratio = Duet / GenAI (tokens/s: higher is better; times: lower)")
    print(f"{'load':<10} {'metric':<22} {'Duet':>10} {'GenAI':>10} {'ratio':>7}")
    for name, duet, genai in rows:
        # TTFT counts from arrival, so it includes the wait for a place in the batch.
        metrics = [("output tokens/s", lambda r: r["output_tokens_per_s"]),
                   ("requests/s", lambda r: r["requests_per_s"]),
                   *((f"TTFT {p.upper()} ms", lambda r, p=p: r["ttft_ms"][p]) for p in ("p50", "p95", "p99")),
                   *((f"TPOT {p.upper()} ms", lambda r, p=p: r["tpot_ms"][p]) for p in ("p50", "p95", "p99")),
                   ("peak memory MiB", lambda r: r["peak_rss_mb"]),
                   # How each split its steps between prompts and decoding.
                   ("steps", lambda r: r["steps"]["count"]),
                   ("step ms (mean)", lambda r: r["steps"]["mean_ms"]),
                   ("decode tokens / step", lambda r: r["steps"]["decode_tokens"]),
                   ("first tokens / step", lambda r: r["steps"]["first_tokens"])]
        for label, get in metrics:
            d, g = get(duet), get(genai)
            d, g = (float("nan") if v is None else v for v in (d, g))
            ratio = d / g if g == g and g else float("nan")
            print(f"{name:<10} {label:<22} {d:>10.1f} {g:>10.1f} {ratio:>7.3f}")
        print(f"{name:<10} {'prompt tokens / step':<22} {duet['steps']['prompt_tokens']:>10.1f} {'':>10}")
        print(f"{name:<10} {'prompt seqs / step':<22} {'':>10} {genai['steps']['prompt_sequences']:>10.2f}")
        if args.each:
            pairs = zip(duet["ttft_each_ms"], genai["ttft_each_ms"])
            print(f"{name:<10} TTFT each, Duet/GenAI ms: " + ", ".join(f"{d:.0f}/{g:.0f}" for d, g in pairs))


def prefix_check(args):
    """TTFT of a new conversation whose system prompt another has run, against the same prompt
    run cold (the first conversation), Duet and GenAI (prefix caching on), one user."""
    requests = prefix_trace(max(args.requests, 3), args.prefix_check)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(requests, f)
        trace_file = f.name
    try:
        print(f"==> {len(requests)} conversations opening with the same {args.prefix_check} tokens: Duet, then GenAI",
              flush=True)
        duet = last_json([str(SERVER), "bench", "serve", "--model", str(args.model), "--trace", trace_file,
                          "--users", "1"])
        genai = last_json([str(PYTHON), "bench/serve_genai.py", "--model", str(args.model), "--trace", trace_file,
                           "--users", "1", "--prefix-caching"])
    finally:
        os.unlink(trace_file)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    rows = []
    for name, run in (("Duet", duet), ("GenAI", genai)):
        each = run["ttft_each_ms"]
        rows.append((name, each[0], median(each[1:])))
        print(f"{name:<6} TTFT each (ms): {', '.join(f'{t:.0f}' for t in each)}")
    print(f"\n{'':<6} {'cold ms':>9} {'cached ms':>10} {'cached / cold':>14}")
    for name, cold, warm in rows:
        print(f"{name:<6} {cold:>9.1f} {warm:>10.1f} {warm / cold:>14.3f}")
    print(f"Duet / GenAI, cached: {rows[0][2] / rows[1][2]:.3f}")


if __name__ == "__main__":
    main()
