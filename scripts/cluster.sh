#!/usr/bin/env bash
# Start a whole Duet cluster on this machine: Postgres, Redis, an S3-compatible store (SeaweedFS),
# two workers (ROLE=worker: the models), two web processes (ROLE=web) and HAProxy in front
# (deploy/haproxy.cfg). Prints the address; Ctrl-C stops everything and removes its data.
#
#   scripts/cluster.sh [--mock] [--debug] [--port N] [--check]
#     --mock   mock engines instead of the models
#     --debug  use the debug build (cargo leptos build) instead of building a release
#     --port   where HAProxy listens (default 8080)
#     --check  start, send a chat turn and a picture through HAProxy, stop (exit status says)
# The models are the fixture models unless LLM_MODEL / SD_MODEL are set (e.g. the real ones,
# with MODELS_DIR or AUTO_DOWNLOAD_MODELS as for scripts/start.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

mock=false; profile=release; port=8080; check=false
while [ $# -gt 0 ]; do
  case "$1" in
    --mock) mock=true ;;
    --debug) profile=debug ;;
    --port) port="$2"; shift ;;
    --check) check=true ;;
    *) die "unknown option $1 (see the top of scripts/cluster.sh)" ;;
  esac
  shift
done

stage "setup: build tools, OpenVINO, PostgreSQL, Redis, SeaweedFS, HAProxy"
ensure_build_tools
ensure_openvino
ensure_postgres
ensure_redis
ensure_s3_server
ensure_haproxy
if [ "$profile" = release ]; then
  stage "build Duet (release)"
  cargo leptos build --release
else
  [ -x target/debug/server ] && [ -d target/site/pkg ] || { stage "build Duet (debug)"; cargo leptos build; }
fi
stage_end
server="$ROOT/target/$profile/server"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d /tmp/duet-cluster.XXXXXX)"
chmod 755 "$dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${pg_data:-}" ]; then run_pg pg_ctl -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
wait_for() { # URL WHAT
  for _ in $(seq 1 300); do [ -n "$(http_get "$1")" ] && return 0; sleep 0.2; done
  die "$2 did not answer at $1 (logs in $dir)"
}

# Postgres: a throwaway cluster (initdb refuses root: then it belongs to the postgres user).
pg_bin="$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 || command -v initdb)")"
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_bin/$@"; else "$pg_bin/$@"; fi; }
pg_port="$(free_port)"; pg_data="$dir/pg"
mkdir -p "$pg_data"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$pg_data"
run_pg initdb -D "$pg_data" -A trust -U postgres --no-sync >/dev/null
run_pg pg_ctl -D "$pg_data" -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1" -l "$pg_data/log" -w start >/dev/null
database="postgres://postgres@127.0.0.1:$pg_port/postgres"
step "postgres on 127.0.0.1:$pg_port"

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)
step "redis on 127.0.0.1:$redis_port"

# SeaweedFS in one process; every port its own.
s3_port="$(free_port)"; mkdir -p "$dir/s3"
weed_ports=(); for _ in 1 2 3 4 5 6 7 8 9; do weed_ports+=("$(free_port)"); done
"$ROOT/.venv-s3/bin/weed" mini -dir="$dir/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="${weed_ports[0]}" -master.port.grpc="${weed_ports[1]}" \
  -volume.port="${weed_ports[2]}" -volume.port.grpc="${weed_ports[3]}" \
  -filer.port="${weed_ports[4]}" -filer.port.grpc="${weed_ports[5]}" \
  -s3.port="$s3_port" -s3.port.grpc="${weed_ports[6]}" \
  -admin.port="${weed_ports[7]}" -admin.port.grpc="${weed_ports[8]}" \
  -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -bucket=duet >"$dir/s3.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$s3_port/duet" "SeaweedFS"
step "S3-compatible store on 127.0.0.1:$s3_port (bucket duet)"

# What every Duet process shares.
export DATABASE_URL="$database" REDIS_URL="redis://127.0.0.1:$redis_port"
export IMAGE_STORE="s3://duet/pictures" S3_ENDPOINT="http://127.0.0.1:$s3_port" S3_REGION=us-east-1
export S3_ACCESS_KEY_ID="${S3_ACCESS_KEY_ID:-duet}" S3_SECRET_ACCESS_KEY="${S3_SECRET_ACCESS_KEY:-duet-secret}"
export WORKER_SECRET="${WORKER_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
export PROCESS_HEARTBEAT_MS="${PROCESS_HEARTBEAT_MS:-2000}" TRUSTED_PROXIES=127.0.0.1
export LLM_MODEL="${LLM_MODEL:-$ROOT/fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov}"
export SD_MODEL="${SD_MODEL:-$ROOT/fixtures/sd/tiny-stable-diffusion-v1-5-int8-ov}"
export USE_MOCKS="$mock" RUST_LOG="${RUST_LOG:-info}"

start_duet() { # NAME ROLE PORT
  local name=$1 role=$2 p=$3
  mkdir -p "$dir/$name"
  ROLE="$role" "$server" --addr "127.0.0.1:$p" --data-dir "$dir/$name" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$p/health" "$name"
  step "$name (ROLE=$role) on 127.0.0.1:$p, log $dir/$name.log"
}
web_ports=("$(free_port)" "$(free_port)")
start_duet worker1 worker "$(free_port)"
start_duet worker2 worker "$(free_port)"
start_duet web1 web "${web_ports[0]}"
start_duet web2 web "${web_ports[1]}"

DUET_LISTEN="127.0.0.1:$port" DUET_WEB1="127.0.0.1:${web_ports[0]}" DUET_WEB2="127.0.0.1:${web_ports[1]}" \
  haproxy -W -db -f deploy/haproxy.cfg >"$dir/haproxy.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$port/health" "HAProxy"

# Ready once a web process sees a worker with its models loaded.
for _ in $(seq 1 600); do
  http_get "http://127.0.0.1:$port/health" | grep -q '"status":"ok"' && break
  sleep 0.5
done

if [ "$check" = true ]; then
  stage "check: a chat turn and a picture through HAProxy"
  python3 - "http://127.0.0.1:$port" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
def call(method, path, body=None, cookie=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **({"cookie": cookie} if cookie else {})})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.headers, json.loads(r.read() or b"null")
headers, _ = call("POST", "/auth/register", {"username": "cluster", "password": "cluster-check-pw"})
cookie = headers["set-cookie"].split(";")[0]
_, chat = call("POST", "/chat", {"user_id": "u", "message": "Hello there"}, cookie)
assert chat["reply"] or chat["reasoning"], chat
assert chat["provider"].startswith("http://"), chat
_, job = call("POST", "/image", {"prompt": "a lighthouse", "width": 256, "height": 256, "num_inference_steps": 2}, cookie)
for _ in range(600):
    _, job = call("GET", f"/jobs/{job['job_id']}", None, cookie)
    if job["status"] in ("done", "failed", "cancelled"):
        break
    time.sleep(0.2)
assert job["status"] == "done", job
print(f"    - chat answered by {chat['provider']}; picture {job['job_id']} drawn")
PY
  stage_end
  exit 0
fi

printf '\n==> Duet cluster at http://127.0.0.1:%s (2 web processes, 2 workers; logs in %s). Ctrl-C stops it.\n' "$port" "$dir"
wait
