#!/usr/bin/env bash
# Set up what is missing, then run every test: format and lint checks, unit and integration tests
# (SQLite, a throwaway PostgreSQL cluster, OpenVINO on the fixture models), and the browser suite
# (Playwright driving Chromium against the real server). Prints how long each stage took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap print_stage_times EXIT

stage "setup: build tools, OpenVINO runtime, Chromium, PostgreSQL, Redis, Prometheus, HAProxy, Playwright"
check_disk_space "$([ -d target/debug/deps ] && echo 8 || echo 25)"
ensure_build_tools
ensure_openvino
ensure_test_tools
ensure_client_venv

stage "format check (cargo fmt --check)"
cargo fmt --all --check

stage "build the site: server + WASM (cargo leptos build)"
cargo leptos build

stage "lint (cargo clippy -D warnings)"
cargo clippy -p server --all-targets -- -D warnings
cargo clippy -p app --features hydrate --target wasm32-unknown-unknown -- -D warnings

stage "unit and integration tests (cargo test)"
cargo test -p server
cargo test -p app --features ssr

stage "official OpenAI client (openai-python) against the server in mock mode, accounts on"
client_data="$(mktemp -d)"
client_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RUST_LOG=warn target/debug/server --addr "127.0.0.1:$client_port" --data-dir "$client_data" \
  --use-mocks true --mock-image-step-ms 1 > "$client_data/server.log" 2>&1 &
client_server=$!
for _ in $(seq 1 100); do [ -n "$(http_get "http://127.0.0.1:$client_port/health")" ] && break; sleep 0.2; done
if ! .venv-clients/bin/python scripts/clients/openai_check.py "http://127.0.0.1:$client_port"; then
  cat "$client_data/server.log"; kill $client_server; exit 1
fi
kill $client_server; wait $client_server 2>/dev/null || true; rm -rf "$client_data"

stage "a whole cluster from scripts/cluster.sh (HAProxy, 2 web processes, 2 workers on the fixture models), checked"
scripts/cluster.sh --debug --check --port "$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

stage "API fuzzing (schemathesis against /api/openapi.json for ${FUZZ_SECONDS:-120} s, mock mode, accounts on)"
scripts/fuzz-api.sh

stage "browser tests (Playwright + Chromium, desktop and phone)"
(cd end2end && npx playwright test)
