"""Helpers shared by the benchmark scripts."""

import json
import os
import socket
import subprocess
import sys


def free_port():
    """A local TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_child(cmd, env=None):
    """Run a benchmark process (with `env` added to the environment) and return the JSON line it
    prints last."""
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def peak_rss_mb():
    """This process's peak resident memory (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def require_inputs(args):
    """Stop with what to run when the benchmark model or the release binary is missing."""
    if not args.model.is_dir():
        sys.exit(f"no model at {args.model}: run scripts/make-fixtures.sh --full first")
    if not args.server.is_file():
        sys.exit(f"no server binary at {args.server}: run cargo build --release -p server first")


# glibc's malloc on transparent huge pages: what Duet sets for itself (server/src/huge_pages.rs).
# A reference variant named "+hugepages" runs with it too, to show what it alone buys there.
HUGE_PAGES_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
