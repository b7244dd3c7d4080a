#!/usr/bin/env bash
# Benchmarks against the reference implementations (bench-only Python stack in .venv-fixtures/).
#   bench/run.sh llm [--llamacpp] [options]
#                                 chat engine vs openvino-genai LLMPipeline (and llama.cpp)
#                                 (see bench/llm.py)
#   bench/run.sh sd [options]     image engine vs openvino-genai Text2ImagePipeline (see bench/sd.py)
#   bench/run.sh safety [options] what the NSFW filter costs per image: Duet's safety checker vs
#                                 diffusers' StableDiffusionSafetyChecker (see bench/safety.py)
#   bench/run.sh load [--fixture-models] [--default-limits] [options]
#                                 the HTTP API under many chat sessions, mock engines or the
#                                 fixture models on OpenVINO (bench/load/)
#   bench/run.sh load --cluster [options]
#                                 the same through HAProxy in front of 1 and then 2 web processes,
#                                 2 mock workers, Postgres and Redis (bench/cluster_load.py)
#   bench/run.sh load --metrics-compare [--rounds N] [options]
#                                 the mock load with Prometheus metrics off and on, side by side
#                                 (bench/load_metrics.py)
#   bench/run.sh chat-turns [options]
#                                 a 30-turn REST /chat conversation on the full-size chat model:
#                                 each turn's time to first token, KV cache kept vs cold
#                                 (bench/chat_turns.py)
#   bench/run.sh jobs [--jobs N] [--clients N]
#                                 the shared image queue: jobs/s accepted and drawn by 1 and by 2
#                                 processes over Postgres and SeaweedFS, mock engines
#                                 (bench/jobs_shared.py)
#   bench/run.sh profile-decode [--steps N]
#                                 where a decode step's time goes: OpenVINO's per-node profile
#                                 and llama.cpp under perf (bench/profile_decode.py)
#   bench/run.sh serve [--users 1,4,8,16] [--rate R] [--requests N]
#                                 many conversations at once: Duet's engine and openvino-genai's
#                                 ContinuousBatchingPipeline on one request stream (bench/serve.py)
#   bench/run.sh share [options]  chat time to first token with and without an image rendering,
#                                 on the full-size models (bench/load/, --mode share)
# Run on an idle machine: a build or test run beside a benchmark can triple its times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
what="${1:-}"; shift || true

# llama.cpp (built for this CPU) and the chat model as its GGUF, made from the same checkpoint.
ensure_gguf() {
  ensure_llamacpp
  [ -f data/bench-models/llm-gguf/deepseek-r1-distill-qwen-1.5b-arch-Q4_K_M.gguf ] ||
    scripts/make-fixtures.sh --full --only llm --gguf
}

case "$what" in
  llm)
    ensure_fixture_venv
    ensure_openvino
    case " $* " in
      *" --llamacpp "*) ensure_gguf ;;
      *) [ -d data/bench-models/llm ] || scripts/make-fixtures.sh --full --only llm ;;
    esac
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
  safety)
    ensure_fixture_venv
    ensure_openvino
    [ -d data/bench-models/sd-safety ] || scripts/make-fixtures.sh --full --only safety
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec .venv-fixtures/bin/python bench/safety.py "$@"
    ;;
  chat-turns)
    ensure_openvino
    [ -d data/bench-models/llm ] && [ -d data/bench-models/sd ] || scripts/make-fixtures.sh --full
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec python3 bench/chat_turns.py "$@"
    ;;
  profile-decode)
    ensure_fixture_venv
    ensure_openvino
    ensure_gguf
    command -v perf >/dev/null 2>&1 || apt_install linux-perf
    exec .venv-fixtures/bin/python bench/profile_decode.py "$@"
    ;;
  serve)
    ensure_fixture_venv
    ensure_openvino
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec python3 bench/serve.py "$@"
    ;;
  jobs)
    ensure_postgres
    ensure_s3_server
    stage "build the server (release)"
    cargo build --release -p server
    stage_end
    exec python3 bench/jobs_shared.py "$@"
    ;;
  load|share)
    stage "build the server and the load tool (release)"
    cargo build --release -p server -p duet-load
    stage_end
    if [ "$what" = load ] && [ "${1:-}" = --cluster ]; then
      shift
      ensure_postgres
      ensure_redis
      ensure_haproxy
      exec python3 bench/cluster_load.py "$@"
    fi
    if [ "$what" = load ] && [ "${1:-}" = --metrics-compare ]; then
      shift
      exec python3 bench/load_metrics.py "$@"
    fi
    data="$(mktemp -d)"
    port="${DUET_LOAD_PORT:-3999}"
    if [ "$what" = load ] && [ "${1:-}" = --fixture-models ]; then
      shift
      ensure_openvino
      server_args=(--llm-model fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov
                   --sd-model fixtures/sd/tiny-stable-diffusion-v1-5-int8-ov)
      load_args=(--mode chat)
    elif [ "$what" = load ]; then
      server_args=(--use-mocks true)
      load_args=(--mode chat)
    else
      ensure_openvino
      [ -d data/bench-models/llm ] && [ -d data/bench-models/sd ] || scripts/make-fixtures.sh --full
      server_args=(--llm-model "$(ls -d data/bench-models/llm/*/)" --sd-model "$(ls -d data/bench-models/sd/*/)"
                   --openvino-cache-dir data/bench/cache)
      load_args=(--mode share)
    fi
    # The load runs measure the engines and the queues, one caller making many sessions: no
    # accounts and no per-account limits in the way; with --default-limits, every limit and queue
    # as a new install has them (what a user of one API key serving many end users meets).
    server_args+=(--auth-required false)
    if [ "${1:-}" = --default-limits ]; then
      shift
    else
      server_args+=(--account-requests-per-minute 0 --user-requests-per-minute 0
                    --account-concurrent-generations 0 --user-concurrent-generations 0)
    fi
    # Extra server flags, e.g. DUET_LOAD_SERVER_ARGS="--mock-token-ms 20".
    read -r -a extra <<< "${DUET_LOAD_SERVER_ARGS:-}"
    server_args+=("${extra[@]}")
    RUST_LOG=warn target/release/server --addr "127.0.0.1:$port" --data-dir "$data" "${server_args[@]}" \
      > "$data/server.log" 2>&1 &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$data"' EXIT
    # Wait until the server answers and its models are ready.
    for _ in $(seq 1 600); do
      if http_get "http://127.0.0.1:$port/health" | grep -q '"status":"ok"'; then break; fi
      kill -0 $server_pid 2>/dev/null || { cat "$data/server.log"; die "the server stopped"; }
      sleep 1
    done
    http_get "http://127.0.0.1:$port/health" | grep -q '"status":"ok"' || die "the server did not become ready"
    target/release/duet-load --url "http://127.0.0.1:$port" "${load_args[@]}" "$@"
    ;;
  *) die "usage: bench/run.sh llm|sd|chat-turns|load|share|jobs|serve [options]" ;;
esac
