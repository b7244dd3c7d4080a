#!/usr/bin/env python3
"""Make Duet's fixture models and their reference outputs.

  tiny (default)  fixtures/llm/..., fixtures/sd/..., fixtures/reference/...   (committed, a few MB)
  --full          full-size random-weight models with the real architectures for benchmarks,
                  written to data/bench-models/ (never committed; several GB and ~1 hour)

Run through scripts/make-fixtures.sh, which prepares the pinned Python environment.
"""

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import llm, llm_gguf, llm_reference, sd, sd_reference, sd_safety  # noqa: E402
from fixtures.common import scrub_paths  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LLM_NAME = "tiny-deepseek-r1-distill-qwen-int4-cw-ov"
SD_NAME = "tiny-stable-diffusion-v1-5-int8-ov"
# The optional NSFW filter, kept apart: the real SD 1.5 OpenVINO export ships without one.
SAFETY_NAME = "tiny-sd-safety-checker"
SEED = 20250120


def make_llm(out: Path, full: bool, refs: Path | None, gguf: Path | None = None):
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        print(f"[llm] building the {'full-size' if full else 'tiny'} Qwen2 model", flush=True)
        llm.make_hf_model(hf, full, SEED)
        if out.exists():
            shutil.rmtree(out)
        print("[llm] exporting with optimum-cli (INT4, channel-wise, symmetric)", flush=True)
        llm.export(hf, out)
        scrub_paths(out, hf, f"duet-fixtures/{out.name}")
        if gguf:
            llm_gguf.make(hf, gguf)
    if refs:
        print("[llm] reference outputs (transformers + openvino-genai)", flush=True)
        llm_reference.make(out, refs / "llm.json")


def make_sd(out: Path, full: bool, refs: Path | None):
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        print(f"[sd] building the {'full-size' if full else 'tiny'} SD 1.5 pipeline", flush=True)
        sd.make_hf_pipeline(hf, full, SEED)
        if out.exists():
            shutil.rmtree(out)
        print("[sd] exporting with optimum-cli (INT8)", flush=True)
        sd.export(hf, out)
        scrub_paths(out, hf, f"duet-fixtures/{out.name}")
    if refs:
        print("[sd] reference outputs (optimum-intel)", flush=True)
        sd_reference.make(out, refs)


def write_manifest(root: Path):
    """sha256 of every fixture file, so a changed fixture shows up in review."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root)}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full-size random-weight models for benchmarks")
    parser.add_argument("--only", choices=["llm", "sd", "safety"], help="make just one of the models")
    parser.add_argument("--out", type=Path, help="output folder (default fixtures/, or data/bench-models/ with --full)")
    parser.add_argument("--gguf", action="store_true",
                        help="with --full: also the chat model for llama.cpp (GGUF, Q4_K_M), from the same "
                             "checkpoint as the OpenVINO export (for bench/run.sh llm --llamacpp)")
    args = parser.parse_args()
    if args.gguf and not (args.full and args.only in (None, "llm")):
        parser.error("--gguf goes with --full and the chat model (--only llm or no --only)")
    out = args.out or (ROOT / "data" / "bench-models" if args.full else ROOT / "fixtures")
    refs = None if args.full else out / "reference"
    if refs:
        refs.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "llm"):
        name = "deepseek-r1-distill-qwen-1.5b-arch-int4-cw-ov" if args.full else LLM_NAME
        gguf = out / "llm-gguf" / "deepseek-r1-distill-qwen-1.5b-arch-Q4_K_M.gguf" if args.gguf else None
        make_llm(out / "llm" / name, args.full, refs, gguf)
    if args.only in (None, "sd"):
        name = "stable-diffusion-v1-5-arch-int8-ov" if args.full else SD_NAME
        make_sd(out / "sd" / name, args.full, refs)
    if args.only in (None, "sd", "safety"):
        if args.full:
            print("[sd] full-size safety checker (CLIP ViT-L/14, safetensors)", flush=True)
            sd_safety.make_full(out / "sd-safety" / "sd-safety-checker-arch", SEED)
        else:
            print("[sd] safety checker and its reference decisions", flush=True)
            sd_safety.make(out / "sd" / SAFETY_NAME, refs, SEED)
    if not args.full:
        write_manifest(out)
    print(f"done: {out}")


if __name__ == "__main__":
    main()
