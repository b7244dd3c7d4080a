#!/usr/bin/env python3
"""What the UNet's int8 linear-layer weights cost in speed (Duet unpacks those of the outer levels
to f32 at load: SD_UNET_LINEAR, server/src/inference/diffusion/unpack.rs).

The SD 1.5 INT8 export stores every linear layer's weights as u8 with a zero point and an f16
scale. OpenVINO's CPU plugin keeps them so and runs those layers as FullyConnectedCompressed,
which decompresses the weights inside the kernel at every call (on AVX2). Folding the
decompression into f32 constants ahead of time (the same numbers, exactly) lets the plugin run
plain f32 GEMMs instead, at the price of 4 bytes per weight instead of 1.

This compiles the UNet of the full-size benchmark model both ways at one size and batch 2 (as
under guidance), runs them alternately so machine drift hits both alike, and prints per-pair
ratios (folded / as shipped) of the whole UNet run, its linear layers and its convolutions
(profiling counters), then each way's peak memory in a process of its own (the folded way's peak includes the graph
being folded in Python, as a load-time rewrite would hold it too).

    scripts/make-fixtures.sh --full --only sd     # once
    .venv-fixtures/bin/python bench/sd_unet_weights.py --size 256 --pairs 8
"""

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, run_child  # noqa: E402
from sd import DEFAULT_MODEL  # noqa: E402

PROPS = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}


def compiled(core, model_dir, size, folded, profile):
    from openvino import passes

    graph = core.read_model(str(model_dir / "unet/openvino_model.xml"))
    hidden = graph.input("encoder_hidden_states").get_partial_shape()[2].get_length()
    graph.reshape({"sample": [2, 4, size // 8, size // 8], "encoder_hidden_states": [2, 77, hidden]})
    if folded:
        manager = passes.Manager()
        manager.register_pass(passes.ConstantFolding())
        manager.run_passes(graph)
    return core.compile_model(graph, "CPU", {**PROPS, "PERF_COUNT": profile}), hidden


def inputs(model, size, hidden):
    import numpy as np
    import openvino as ov

    rng = np.random.default_rng(0)
    int_timestep = model.input("timestep").get_element_type() == ov.Type.i64
    return {
        "sample": rng.standard_normal((2, 4, size // 8, size // 8)).astype(np.float32),
        "timestep": np.array([500], dtype=np.int64 if int_timestep else np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, hidden)).astype(np.float32),
    }


def memory_worker(args):
    """One way only, in its own process: peak memory after compiling and one run."""
    import openvino as ov

    model, hidden = compiled(ov.Core(), args.model, args.size, args.folded, False)
    model.create_infer_request().infer(inputs(model, args.size, hidden))
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--size", type=int, default=256, help="square image size (the UNet sees size/8)")
    p.add_argument("--pairs", type=int, default=8, help="alternating runs of each way")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folded", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not (args.model / "unet/openvino_model.xml").is_file():
        sys.exit(f"no UNet under {args.model}: run scripts/make-fixtures.sh --full first")
    if args.memory_worker:
        return memory_worker(args)

    import openvino as ov

    core = ov.Core()
    ways = {}
    for name, folded in (("as shipped", False), ("folded f32", True)):
        model, hidden = compiled(core, args.model, args.size, folded, True)
        ways[name] = model.create_infer_request()
    feed = inputs(model, args.size, hidden)
    for request in ways.values():
        request.infer(feed)  # warm-up
    runs = collections.defaultdict(list)
    for i in range(args.pairs):
        for name in list(ways)[:: 1 if i % 2 == 0 else -1]:
            started = time.perf_counter()
            ways[name].infer(feed)
            total = (time.perf_counter() - started) * 1000
            counters = ways[name].profiling_info
            ms = lambda kind: sum(c.real_time.total_seconds() * 1000 for c in counters if c.node_type.startswith(kind))
            runs[name].append((total, ms("FullyConnected"), ms("Convolution")))
    print(f"UNet at {args.size}x{args.size}, batch 2, {args.pairs} alternating pairs")
    for name, values in runs.items():
        print(f"  {name:11}: run {statistics.median(v[0] for v in values):8.1f} ms, "
              f"linear layers {statistics.median(v[1] for v in values):8.1f} ms, "
              f"convolutions {statistics.median(v[2] for v in values):8.1f} ms (medians)")
    (a, b) = runs.values()
    # Shipped, the 1x1 projection convolutions run as linear layers; folded, as convolutions.
    for label, k in (("whole run", 0), ("linear layers", 1), ("convolutions", 2)):
        ratios = [y[k] / x[k] for x, y in zip(a, b)]
        print(f"  folded / as shipped, {label:13}: median {statistics.median(ratios):.3f}  "
              f"per pair {' '.join(f'{r:.2f}' for r in ratios)}")
    del ways
    for name, flag in (("as shipped", []), ("folded f32", ["--folded"])):
        cmd = [sys.executable, __file__, "--memory-worker", "--model", str(args.model), "--size", str(args.size), *flag]
        print(f"  peak memory, {name:11}: {run_child(cmd)['peak_rss_mb']:8.0f} MiB")


if __name__ == "__main__":
    main()
