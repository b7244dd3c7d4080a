#!/usr/bin/env bash
# Set up what is missing, build Duet (release) and start it at http://127.0.0.1:3000.
# Configuration comes from the environment or a .env file (see README.md); arguments are passed on
# to the server, e.g. `scripts/start.sh --help`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

stage "setup: Rust targets, cargo-leptos, wasm-bindgen, wasm-opt, OpenVINO runtime"
ensure_build_tools
ensure_openvino

stage "build Duet (release; the first build takes a while)"
cargo leptos build --release
stage_end

# A first start without the models fetches them in the background (the UI shows the progress),
# unless AUTO_DOWNLOAD_MODELS is set in the environment or .env.
if [[ -z "${AUTO_DOWNLOAD_MODELS:-}" ]] && ! grep -qs '^AUTO_DOWNLOAD_MODELS=' .env; then
    export AUTO_DOWNLOAD_MODELS=true
fi

printf '\n==> starting Duet at http://%s (Ctrl-C stops it)\n' "${LEPTOS_SITE_ADDR:-127.0.0.1:3000}"
exec target/release/server "$@"
