#!/usr/bin/env python3
"""A long conversation through REST `POST /chat`, as a user has it: time to first token at every
turn with the conversation's KV cache kept, against the same turn run cold.

Starts the release server twice on the full-size chat model, each on a throwaway data folder:
once as configured (the KV cache of the conversation kept between turns), once with
`LLM_KV_SESSIONS=0` (nothing kept: every turn runs its whole window). Both get the same messages,
greedy, `max_tokens` small; the ratio is live / cold per turn. A turn where the window's start
moved (its cached tokens are a small part of the prompt) is marked `*`: it costs one cold run.

    bench/run.sh chat-turns                                  # 30 turns, CONTEXT_TURNS=8
    bench/run.sh chat-turns --server-args "--llm-context-tokens 2048" --context-turns 1000
"""

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "data/bench-models/llm/deepseek-r1-distill-qwen-1.5b-arch-int4-cw-ov"
DEFAULT_SD = ROOT / "data/bench-models/sd"

WORDS = ("river stone lantern orchard copper meadow harbor violin thunder pepper garden window "
         "silver canyon basket marble feather engine ladder compass winter saddle pocket island "
         "candle mirror forest bridge rocket pillow button desert planet cabin tunnel velvet").split()


def message(turn, words):
    rng = random.Random(1000 + turn)
    return f"Turn {turn}: " + " ".join(rng.choice(WORDS) for _ in range(words))


def call(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        sys.exit(f"POST {url}: {e.code} {e.read()[:500]!r}")


def start_server(args, port, data, extra):
    sd = sorted(p for p in args.sd.iterdir() if p.is_dir()) if args.sd.is_dir() else []
    cmd = [str(args.server), "--addr", f"127.0.0.1:{port}", "--data-dir", data, "--llm-model", str(args.model),
           "--auth-required", "false", "--user-requests-per-minute", "0", "--account-requests-per-minute", "0",
           "--context-turns", str(args.context_turns), *shlex.split(args.server_args), *extra]
    if sd:
        cmd += ["--sd-model", str(sd[0])]
    log = open(Path(data) / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "RUST_LOG": "warn"})
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"the server stopped:\n{(Path(data) / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read()).get("status") == "ok":
                    return proc
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass
        time.sleep(1)
    proc.kill()
    sys.exit("the server did not become ready in 10 minutes")


def conversation(args, extra):
    """One conversation of args.turns turns; per turn: prompt and cached tokens, ttft."""
    with tempfile.TemporaryDirectory() as data:
        port = args.port
        proc = start_server(args, port, data, extra)
        try:
            url = f"http://127.0.0.1:{port}/chat"
            conv, turns = None, []
            for t in range(args.turns):
                body = {"user_id": "turns", "message": message(t, args.words), "max_tokens": args.max_tokens,
                        "temperature": 0}
                if conv:
                    body["conversation_id"] = conv
                r = call(url, body)
                conv = r["conversation_id"]
                turns.append({"turn": t + 1, "prompt_tokens": r["usage"]["prompt_tokens"],
                              "cached_tokens": r["usage"].get("cached_tokens", 0), "ttft_ms": r["timings"]["ttft_ms"]})
                print(f"  turn {t + 1}: {turns[-1]}", file=sys.stderr)
            return turns
        finally:
            proc.terminate()
            proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--sd", type=Path, default=DEFAULT_SD, help="folder holding the image model (loaded, never run)")
    p.add_argument("--server", type=Path, default=ROOT / "target/release/server")
    p.add_argument("--turns", type=int, default=30)
    p.add_argument("--words", type=int, default=90, help="words per message (90: ~340 tokens)")
    p.add_argument("--max-tokens", type=int, default=4)
    p.add_argument("--context-turns", type=int, default=8)
    p.add_argument("--server-args", default="", help="extra server arguments for both runs")
    p.add_argument("--port", type=int, default=3998)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.model.is_dir():
        sys.exit(f"no model at {args.model}: run scripts/make-fixtures.sh --full first")
    if not args.server.is_file():
        sys.exit(f"no server binary at {args.server}: run cargo build --release -p server first")

    print("live: the conversation's KV cache kept", file=sys.stderr)
    live = conversation(args, [])
    print("cold: LLM_KV_SESSIONS=0", file=sys.stderr)
    cold = conversation(args, ["--llm-kv-sessions", "0"])
    rows = []
    for a, b in zip(live, cold):
        moved = a["turn"] > 1 and a["cached_tokens"] < a["prompt_tokens"] // 4
        rows.append({**a, "cold_prompt_tokens": b["prompt_tokens"], "cold_cached_tokens": b["cached_tokens"],
                     "cold_ttft_ms": b["ttft_ms"], "ratio": a["ttft_ms"] / max(b["ttft_ms"], 1e-9), "moved": moved})
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{args.turns}-turn /chat conversation, CONTEXT_TURNS={args.context_turns} {args.server_args}".rstrip())
    print(f"{'turn':>4} {'prompt':>7} {'cached':>7} {'live ms':>9} {'cold ms':>9} {'ratio':>6}")
    for r in rows:
        mark = " *" if r["moved"] else ""
        print(f"{r['turn']:>4} {r['prompt_tokens']:>7} {r['cached_tokens']:>7} {r['ttft_ms']:>9.0f} "
              f"{r['cold_ttft_ms']:>9.0f} {r['ratio']:>6.2f}{mark}")
    steady = [r for r in rows[1:] if not r["moved"]]
    moves = [r for r in rows if r["moved"]]
    print(f"window moves (*): {len(moves)} at turns {[r['turn'] for r in moves]}, "
          f"{[round(r['ttft_ms']) for r in moves]} ms")
    if steady:
        worst = max(steady, key=lambda r: r["ratio"])
        print(f"other turns after the first: worst ratio {worst['ratio']:.2f} (turn {worst['turn']}), "
              f"from turn 5 on {max((r['ratio'] for r in steady if r['turn'] >= 5), default=0):.2f}")


if __name__ == "__main__":
    main()
