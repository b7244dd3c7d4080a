#!/usr/bin/env bash
# Set up what is missing, then run every test: format and lint checks, unit and integration tests
# (SQLite, a throwaway PostgreSQL cluster, OpenVINO on the fixture models), and the browser suite
# (Playwright driving Chromium against the real server). Prints how long each stage took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap print_stage_times EXIT

stage "setup: build tools, OpenVINO runtime, Chromium, PostgreSQL, Playwright"
ensure_build_tools
ensure_openvino
ensure_test_tools

stage "format check (cargo fmt --check)"
cargo fmt --all --check

stage "build the site: server + WASM (cargo leptos build)"
cargo leptos build

stage "lint (cargo clippy -D warnings)"
cargo clippy -p server --all-targets -- -D warnings

stage "unit and integration tests (cargo test)"
cargo test -p server

stage "browser tests (Playwright + Chromium, desktop and phone)"
(cd end2end && npx playwright test)
