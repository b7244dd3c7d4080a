#!/usr/bin/env python3
"""Where a decode step's time goes: OpenVINO's CPU plugin (the kernels Duet and GenAI both run)
against llama.cpp, on the same full-size random-weight model, one stream, all cores.

OpenVINO: the model compiled as Duet compiles it for decoding (LATENCY hint, u8 KV cache,
dynamic quantization in groups of 32) with PERF_COUNT on; after a 512-token prompt, every decode
step's per-node times are summed by part of the model (attention projections, MLP, lm_head,
attention itself, the rest). The stateful graph is profiled: its projections and lm_head are the
same nodes as in Duet's paged graph; only the attention node differs.

llama.cpp: `perf record` on llama-cpp-python decoding the same prompt (needs perf); samples are
grouped by kernel, and the decode kernels (gemv) are told apart from the prompt's (gemm).

Weight bytes per part come from the model's shapes, so each part's time turns into the memory
bandwidth it reached.

    bench/run.sh profile-decode [--steps 32] [--prompt-tokens 512]
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm import DEFAULT_GGUF, DEFAULT_MODEL, ROOT  # noqa: E402

PARTS = [
    ("attention projections (q,k,v,o)", re.compile(r"self_attn\.(q|k|v|o)_proj")),
    ("MLP (gate, up, down)", re.compile(r"mlp\.(gate|up|down)_proj")),
    ("lm_head", re.compile(r"lm_head")),
]


def part_of(name, node_type):
    for part, pattern in PARTS:
        if pattern.search(name) and node_type.startswith(("FullyConnected", "MatMul")):
            return part
    if node_type.startswith("FullyConnected") and "lm_head" not in name and "proj" not in name:
        return "other matrix products"
    if node_type in ("ScaledDotProductAttentionWithKVCache", "ScaledDotProductAttention", "PagedAttentionExtension"):
        return "attention"
    return "everything else"


def weight_mb(config):
    """Weight megabytes each part reads per token in the OpenVINO export (int4 channel-wise layers,
    int8 lm_head, as optimum-cli's --weight-format int4 --ratio 1.0 leaves it)."""
    h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h // config["num_attention_heads"] * config["num_key_value_heads"]
    return {
        "attention projections (q,k,v,o)": n * (2 * h * h + 2 * h * kv) * 0.5 / 1e6,
        "MLP (gate, up, down)": n * 3 * h * i * 0.5 / 1e6,
        "lm_head": config["vocab_size"] * h / 1e6,
    }


def openvino_profile(args):
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(args.model / "openvino_model.xml")
    compiled = core.compile_model(model, "CPU", {
        "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "KV_CACHE_PRECISION": "u8",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32})
    req = compiled.create_infer_request()
    n = args.prompt_tokens
    ids = np.array([[3 + (i * 7919 + 13) % 937 for i in range(n)]], dtype=np.int64)
    req.reset_state()
    req.infer({"input_ids": ids, "attention_mask": np.ones((1, n), np.int64),
               "position_ids": np.arange(n, dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)})
    token = int(req.get_tensor("logits").data[0, -1].argmax())
    per_part = collections.Counter()
    per_exec = collections.Counter()
    walls = []
    for step in range(args.steps):
        pos = n + step
        started = time.perf_counter()
        req.infer({"input_ids": np.array([[token]], np.int64), "attention_mask": np.ones((1, pos + 1), np.int64),
                   "position_ids": np.array([[pos]], np.int64), "beam_idx": np.zeros(1, np.int32)})
        walls.append(time.perf_counter() - started)
        token = int(req.get_tensor("logits").data[0, -1].argmax())
        for info in req.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            ms = info.real_time.total_seconds() * 1000
            part = part_of(info.node_name, info.node_type)
            per_part[part] += ms
            per_exec[(part, info.node_type, info.exec_type)] += ms
    steps = args.steps
    return {
        "wall_ms_per_token": sum(walls) * 1000 / steps,
        "parts_ms": {k: v / steps for k, v in per_part.items()},
        "kernels_ms": [[p, t, e, v / steps] for (p, t, e), v in per_exec.most_common(12)],
    }


def llamacpp_profile(args):
    python = os.environ.get("LLAMACPP_PYTHON")
    if not python:
        sys.exit("needs $LLAMACPP_PYTHON: run it as bench/run.sh profile-decode")
    with tempfile.TemporaryDirectory() as tmp:
        data, control = Path(tmp) / "perf.data", Path(tmp) / "control"
        os.mkfifo(control)
        # Sampling starts disabled (-D -1); the worker enables it once its prompt is done.
        cmd = ["perf", "record", "-q", "-F", "1999", "-D", "-1", "--control", f"fifo:{control}",
               "-o", str(data), "--", python, str(ROOT / "bench/llm.py"),
               "--llamacpp-worker", "--gguf", str(args.gguf), "--model", str(args.model), "--perf-control",
               str(control), "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.steps), "--runs", "1"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"perf record failed (is perf installed? apt install linux-perf):\n{out.stderr[-1500:]}")
        timing = json.loads(out.stdout.strip().splitlines()[-1])
        report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "symbol",
                                 "--percent-limit", "0.3"], capture_output=True, text=True).stdout
    symbols = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(\S+)", line)
        if m:
            symbols.append((m.group(2), float(m.group(1))))
    return {"timing": timing, "symbols": symbols}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--only", choices=["openvino", "llamacpp"])
    p.add_argument("--wall-ms", type=float, help="OpenVINO's unprofiled time per token, to scale the shares to")
    args = p.parse_args()
    config = json.loads((args.model / "config.json").read_text())
    if args.only in (None, "openvino"):
        ov_result = openvino_profile(args)
        mb = weight_mb(config)
        # The plugin's per-node times add up to more than the wall time of a profiled step (they
        # include waits for the other thread), so they are shown as shares, turned into ms of the
        # unprofiled step time (--wall-ms, e.g. from bench/run.sh llm) when given.
        total = sum(ov_result["parts_ms"].values())
        wall = args.wall_ms or ov_result["wall_ms_per_token"]
        print(f"OpenVINO decode step: {ov_result['wall_ms_per_token']:.1f} ms wall per token profiled; "
              f"shares below are of the nodes' summed times, ms/token of {wall:.1f} ms")
        print(f"  {'part':36} {'share':>6} {'ms/token':>9} {'weights MB':>11} {'GB/s':>6}")
        for part, ms in sorted(ov_result["parts_ms"].items(), key=lambda kv: -kv[1]):
            size, share = mb.get(part), ms / total
            rate = f"{size / (share * wall):6.1f}" if size else ""
            print(f"  {part:36} {share:6.1%} {share * wall:9.2f} {size or 0:11.0f} {rate:>6}")
        print("  heaviest node kinds (part, node type, kernel, share):")
        for part, node_type, exec_type, ms in ov_result["kernels_ms"]:
            print(f"    {part:34} {node_type:28} {exec_type:24} {ms / total:6.1%}")
    if args.only in (None, "llamacpp"):
        lc = llamacpp_profile(args)
        t = lc["timing"]
        print(f"\nllama.cpp: {t['tpot_ms']:.1f} ms per token, TTFT {t['ttft_ms']:.0f} ms "
              f"(under perf, which sampled the last run's decoding only)")
        print(f"  {'symbol':70} share   ms/token")
        for name, pct in lc["symbols"][:14]:
            print(f"  {name:70} {pct:5.1f}% {pct * t['tpot_ms'] / 100:7.2f}")


if __name__ == "__main__":
    main()
