#!/usr/bin/env python3
"""Duet's image engine against openvino-genai's Text2ImagePipeline, side by side in one run.

Both get the same model folder, prompt, size, steps, guidance, scheduler (the folder's own,
PNDM for SD 1.5) and seeds, and all cores; each runs in its own process so its peak memory is
its own. Both compile for the requested size (GenAI via reshape(); Duet does so by itself).
Prints medians per size (the first image of each process is a discarded warm-up) with the ratio
ours / GenAI, and how far apart the two images of the same seed are (Duet draws its noise
exactly as GenAI's CppStdGenerator does).

    bench/run.sh sd                          # after scripts/make-fixtures.sh --full
    bench/run.sh sd --sizes 512,256 --steps 20 --runs 1 --rounds 1
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HUGE_PAGES_ENV, peak_rss_mb, require_inputs, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "data/bench-models/sd/stable-diffusion-v1-5-arch-int8-ov"
# The same texts as server/src/commands/bench_sd.rs.
PROMPT = "a watercolor painting of a red fox in the snow, soft light"
NEGATIVE = "blurry, low quality"



def genai_worker(args):
    """Runs in its own process: Text2ImagePipeline for one size, images with seeds 0..runs."""
    import numpy as np
    import openvino_genai as ov_genai

    started = time.perf_counter()
    pipe = ov_genai.Text2ImagePipeline(str(args.model))
    pipe.reshape(1, args.height, args.width, args.guidance)
    # At --precision f32 both engines pin f32 (Duet: SD_PRECISION=f32); at fast (the default)
    # both run what OpenVINO picks for this CPU (bf16 with dynamic quantization where the CPU has
    # AMX or AVX-512 BF16), each with its own defaults.
    props = {"PERFORMANCE_HINT": "LATENCY"}
    if args.precision == "f32":
        props.update(INFERENCE_PRECISION_HINT="f32", DYNAMIC_QUANTIZATION_GROUP_SIZE=0)
    pipe.compile("CPU", CACHE_DIR=str(args.cache_dir or ROOT / "data/bench/genai-cache"), **props)
    load_ms = (time.perf_counter() - started) * 1000
    total, unet, text, vae = [], [], [], []
    for run in range(args.runs + 1):
        t = time.perf_counter()
        image = pipe.generate(PROMPT, negative_prompt=NEGATIVE, width=args.width, height=args.height,
                              num_inference_steps=args.steps, guidance_scale=args.guidance, rng_seed=run)
        elapsed = (time.perf_counter() - t) * 1000
        if args.save_seed_image is not None and run == args.save_seed_image:
            np.save(args.save_to, np.asarray(image.data)[0])
        if run == 0:
            continue
        m = pipe.get_performance_metrics()
        total.append(elapsed)
        durations = [d / 1000 for d in m.raw_metrics.unet_inference_durations]
        unet.append(statistics.median(durations) if durations else float("nan"))
        encoders = m.get_text_encoder_infer_duration()  # per encoder, by name
        text.append(sum(encoders.values()) if isinstance(encoders, dict) else encoders)
        vae.append(m.get_vae_decoder_infer_duration())
    if not total:  # only asked to save an image
        print(json.dumps({"load_ms": load_ms, "peak_rss_mb": peak_rss_mb()}))
        return
    print(json.dumps({
        "total_ms": statistics.median(total),
        "unet_step_ms": statistics.median(unet),
        "text_encode_ms": statistics.median(text),
        "vae_ms": statistics.median(vae),
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
    }))


def cpu_class():
    """The class Duet picks its settings by (server/src/inference/cpu.rs), from the CPU's flags."""
    flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "").split()
    return "amx" if {"amx_bf16", "amx_int8"} & set(flags) else "avx512" if "avx512f" in flags else "avx2"


def pixel_difference(args, size, tmp):
    """The same seed through both engines: how far apart are the pictures?"""
    import numpy as np
    from PIL import Image

    w, h = size
    genai_npy = Path(tmp) / "genai.npy"
    run_child([sys.executable, __file__, "--genai-worker", "--model", str(args.model), "--width", str(w),
               "--height", str(h), "--steps", str(args.steps), "--guidance", str(args.guidance), "--runs", "0",
               "--save-seed-image", "0", "--save-to", str(genai_npy), "--precision", args.precision])
    duet_png = Path(tmp) / "duet.png"
    run_child([str(args.server), "--data-dir", str(ROOT / "data/bench"), "--sd-precision", args.precision,
               "imagine", "--model", str(args.model),
               "--prompt", PROMPT, "--negative-prompt", NEGATIVE, "--width", str(w), "--height", str(h),
               "--steps", str(args.steps), "--guidance", str(args.guidance), "--seed", "0",
               "--out", str(duet_png), "--json"])
    ours = np.asarray(Image.open(duet_png).convert("RGB")).astype(int)
    theirs = np.load(genai_npy).astype(int)
    diff = np.abs(ours - theirs)
    return int(diff.max()), float(diff.mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--server", type=Path, default=ROOT / "target/release/server")
    p.add_argument("--sizes", default="512,256", help="square sizes, comma-separated")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--runs", type=int, default=1, help="timed images per process (after one warm-up)")
    p.add_argument("--rounds", type=int, default=1, help="rounds per size, rotating which engine goes first")
    p.add_argument("--compare-pixels", action="store_true", help="also compare both engines' image of seed 0")
    p.add_argument("--genai-huge-pages", action="store_true",
                   help="also run GenAI with glibc's malloc on huge pages, as Duet runs (HUGE_PAGES=true)")
    p.add_argument("--duet-int8", action="store_true",
                   help="also run Duet with the UNet's linear weights as shipped (SD_UNET_LINEAR=int8)")
    p.add_argument("--precision", choices=["fast", "f32"], default="fast",
                   help="both engines at OpenVINO's choice for this CPU (fast, Duet's default) or pinned to f32")
    p.add_argument("--cold", action="store_true",
                   help="give every engine process an empty compiled-model cache, so each one compiles "
                        "(first start for a size) instead of importing")
    p.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, help=argparse.SUPPRESS)
    p.add_argument("--height", type=int, help=argparse.SUPPRESS)
    p.add_argument("--save-seed-image", type=int, help=argparse.SUPPRESS)
    p.add_argument("--save-to", help=argparse.SUPPRESS)
    p.add_argument("--genai-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.genai_worker:
        return genai_worker(args)
    require_inputs(args)

    print(f"model {args.model.name}, {args.steps} steps, guidance {args.guidance}, {args.rounds} round(s) x "
          f"{args.runs} image(s) (+1 warm-up each), {os.cpu_count()} cores, CPU class {cpu_class()}, precision "
          f"{args.precision} (both engines), compiled-model caches: "
          f"{'empty (every process compiles)' if args.cold else 'kept (a size compiles once)'}", flush=True)
    rows = [("total per image (ms)", "total_ms", "<= 1.00"), ("UNet step (ms)", "unet_step_ms", ""),
            ("text encoder (ms)", "text_encode_ms", ""), ("VAE decoder (ms)", "vae_ms", ""),
            ("load + compile (ms)", "load_ms", ""), ("peak memory (MiB)", "peak_rss_mb", "<= 1.10")]
    for size in [int(s) for s in args.sizes.split(",")]:
        common = ["--width", str(size), "--height", str(size), "--steps", str(args.steps),
                  "--guidance", str(args.guidance), "--runs", str(args.runs)]
        genai = [sys.executable, __file__, "--genai-worker", "--model", str(args.model), *common,
                 "--precision", args.precision]
        duet = [str(args.server), "--data-dir", str(ROOT / "data/bench"), "--sd-precision", args.precision,
                "bench", "sd", "--model", str(args.model), *common]
        engines = [("Duet", duet, None)]
        if args.duet_int8:
            engines.append(("Duet int8", [*duet, "--sd-unet-linear", "int8"], None))
        ours = [name for name, _, _ in engines]
        engines.append(("GenAI", genai, None))
        if args.genai_huge_pages:
            engines.append(("GenAI+hugepages", genai, HUGE_PAGES_ENV))
        results = {name: [] for name, _, _ in engines}
        for r in range(args.rounds):
            # Rotate which engine goes first, round after round.
            shift = r % len(engines)
            for name, cmd, env in engines[shift:] + engines[:shift]:
                if args.cold:
                    with tempfile.TemporaryDirectory(dir=ROOT / "data/bench") as cache:
                        flag = "--cache-dir" if name.startswith("GenAI") else "--openvino-cache-dir"
                        results[name].append(run_child([*cmd, flag, cache], env))
                else:
                    results[name].append(run_child(cmd, env))
                last = results[name][-1]
                settings = f", {last['drawn_at']}, UNet {last['unet_linear']}" if "drawn_at" in last else ""
                print(f"  {size}x{size} round {r + 1} {name:15}: {last['total_ms']:9.0f} ms per image, "
                      f"UNet step {last['unet_step_ms']:7.1f} ms, {last['peak_rss_mb']:6.0f} MiB{settings}", flush=True)
        med = lambda name, key: statistics.median(x[key] for x in results[name])
        for duet_name in ours:
            for name in [n for n, _, _ in engines if n not in ours]:
                print(f"\n{size}x{size}, {args.steps} steps: {duet_name} against {name}")
                print(f"{'metric':24} {'Duet':>10} {'GenAI':>10} {'ratio':>7} {'per-round ratios':>24}  target")
                for label, key, target in rows:
                    a, b = med(duet_name, key), med(name, key)
                    per_round = " ".join(f"{o[key] / t[key]:.2f}" for o, t in zip(results[duet_name], results[name]))
                    print(f"{label:24} {a:10.1f} {b:10.1f} {a / b:7.3f} {per_round:>24}  {target}")
        if args.compare_pixels:
            with tempfile.TemporaryDirectory() as tmp:
                mx, mean = pixel_difference(args, (size, size), tmp)
            print(f"same seed, both engines: max pixel difference {mx}, mean {mean:.3f}")
        print(flush=True)
        for name, rounds in results.items():
            print(f"{name} {size}: {json.dumps(rounds)}")


if __name__ == "__main__":
    main()
