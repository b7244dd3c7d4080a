#!/usr/bin/env bash
# Benchmarks against the reference implementations (bench-only Python stack in .venv-fixtures/).
#   bench/run.sh llm [options]    chat engine vs openvino-genai LLMPipeline (see bench/llm.py)
#   bench/run.sh sd [options]     image engine vs openvino-genai Text2ImagePipeline (see bench/sd.py)
# Run on an idle machine: a build or test run beside a benchmark can triple its times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
what="${1:-}"; shift || true
case "$what" in
  llm)
    ensure_fixture_venv
    ensure_openvino
    [ -d data/bench-models/llm ] || scripts/make-fixtures.sh --full --only llm
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec .venv-fixtures/bin/python bench/llm.py "$@"
    ;;
  sd)
    ensure_fixture_venv
    ensure_openvino
    [ -d data/bench-models/sd ] || scripts/make-fixtures.sh --full
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec .venv-fixtures/bin/python bench/sd.py "$@"
    ;;
  *) die "usage: bench/run.sh llm|sd [options]" ;;
esac
