#!/usr/bin/env bash
# Install what Duet needs and is missing. start.sh and test.sh call this themselves.
#   scripts/setup.sh            everything for building and running
#   scripts/setup.sh openvino   only the OpenVINO runtime (into .openvino/)
#   scripts/setup.sh test       everything, plus what the tests need (Chromium, PostgreSQL, redis-server, Playwright)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
case "${1:-all}" in
  openvino) ensure_openvino ;;
  all) ensure_build_tools; ensure_openvino ;;
  test) ensure_build_tools; ensure_openvino; ensure_test_tools ;;
  *) die "usage: scripts/setup.sh [all|openvino|test]" ;;
esac
