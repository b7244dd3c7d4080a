#!/usr/bin/env bash
# Make the fixture models and their reference outputs (see scripts/make_fixture_models.py).
#   scripts/make-fixtures.sh            tiny models + references into fixtures/ (committed)
#   scripts/make-fixtures.sh --full     full-size random-weight models into data/bench-models/
#   scripts/make-fixtures.sh --full --only llm --gguf
#                                       the full-size chat model, and the same weights as GGUF
#                                       Q4_K_M for llama.cpp (builds llama-cpp-python first)
# The pinned Python stack (torch, transformers, optimum-intel, openvino-genai, ...) goes into
# .venv-fixtures/ on first use; it is a few GB and only this script and bench/ need it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_fixture_venv
case " $* " in *" --gguf "*) ensure_llamacpp ;; esac
step "make fixture models ($*)"
.venv-fixtures/bin/python scripts/make_fixture_models.py "$@"
