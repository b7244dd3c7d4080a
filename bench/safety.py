#!/usr/bin/env python3
"""What the NSFW filter costs per image: Duet's safety checker (an OpenVINO graph over the
repository's safetensors) against diffusers' StableDiffusionSafetyChecker (PyTorch, the reference the real
pipeline runs), side by side in one run on the same checker files and the same 512×512 picture.

Each side runs in its own process, with all cores: load, one discarded warm-up check, then the
median of --runs checks (feature extraction included: resize, crop, normalise, CLIP, concepts).
Prints both, the ratio ours / reference, and whether the two decided alike.

    bench/run.sh safety                      # after scripts/make-fixtures.sh --full --only safety
    bench/run.sh safety --runs 5 --rounds 2
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, require_inputs, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "data/bench-models/sd-safety/sd-safety-checker-arch"


def reference_worker(args):
    """Runs in its own process: what diffusers' pipeline does in run_safety_checker."""
    import numpy as np
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from PIL import Image
    from transformers import CLIPImageProcessor

    started = time.perf_counter()
    checker = StableDiffusionSafetyChecker.from_pretrained(args.model / "safety_checker").eval()
    processor = CLIPImageProcessor.from_pretrained(args.model / "feature_extractor")
    load_ms = (time.perf_counter() - started) * 1000
    picture = Image.open(args.image).convert("RGB")
    images = np.asarray(picture, dtype=np.float32)[None] / 255.0
    times, nsfw = [], False
    for run in range(args.runs + 1):
        t = time.perf_counter()
        with torch.no_grad():
            clip_input = processor(picture, return_tensors="pt").pixel_values
            _, flags = checker(images=images.copy(), clip_input=clip_input)
        nsfw = bool(flags[0])
        if run > 0:
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"check_ms": statistics.median(times), "load_ms": load_ms, "nsfw": nsfw,
                      "torch_threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a folder with safety_checker/")
    parser.add_argument("--server", type=Path, default=ROOT / "target/release/server")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times")
    parser.add_argument("--image", type=Path, help="picture to check (default: 512×512 noise, fixed seed)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return reference_worker(args)
    require_inputs(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.image is None:
            import numpy as np
            from PIL import Image

            args.image = Path(tmp) / "noise.png"
            pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(args.image)
        ratios = []
        for round_ in range(args.rounds):
            ours = run_child([str(args.server), "bench", "safety", "--model", str(args.model),
                              "--image", str(args.image), "--runs", str(args.runs)])
            ref = run_child([sys.executable, __file__, "--worker", "--model", str(args.model),
                             "--image", str(args.image), "--runs", str(args.runs)])
            ratio = ours["check_ms"] / ref["check_ms"]
            ratios.append(ratio)
            print(f"round {round_ + 1}: Duet ({ours['form']}) {ours['check_ms']:.0f} ms per check, "
                  f"load {ours['load_ms']:.0f} ms, peak RSS {ours['peak_rss_mb']:.0f} MiB | "
                  f"diffusers {ref['check_ms']:.0f} ms, load {ref['load_ms']:.0f} ms, "
                  f"peak RSS {ref['peak_rss_mb']:.0f} MiB | ratio {ratio:.3f} | "
                  f"same decision: {ours['nsfw'] == ref['nsfw']}", flush=True)
        print(f"time per check, Duet / diffusers: {statistics.median(ratios):.3f} "
              f"({' '.join(f'{r:.2f}' for r in ratios)}); cpu class {ours['cpu_class']}")


if __name__ == "__main__":
    main()
