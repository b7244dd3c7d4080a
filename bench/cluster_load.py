#!/usr/bin/env python3
"""The HTTP API under many chat sessions through HAProxy (deploy/haproxy.cfg) in front of 1 and
then 2 web processes (ROLE=web), two mock workers (ROLE=worker) answering the chat turns, over a
throwaway Postgres and Redis: what a second web process adds. On a 2-core machine every process
shares the same two cores, so the gain is bounded by the CPU; the figures say how much.

Run through `bench/run.sh load --cluster [duet-load options]` (it builds the release server and
the load tool first). Prints duet-load's report for each size and a summary: requests/s, P50/P95
latencies, statuses (429/503 are the deliberate refusals) and errors. Standard library only;
needs Postgres's server binaries, redis-server and haproxy (scripts/setup.sh test installs them)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port  # noqa: E402
from jobs_shared import Postgres, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/server")
LOAD = os.path.join(ROOT, "target/release/duet-load")
SECRET = "bench-cluster-shared-secret"


def healthy(port, need_ok=False):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as res:
        body = json.loads(res.read())
        return res.status == 200 and (not need_ok or body["status"] == "ok")


def start_duet(work, name, role, shared):
    port, data = free_port(), os.path.join(work, name)
    os.makedirs(data)
    args = [SERVER, "--addr", f"127.0.0.1:{port}", "--data-dir", data, *shared]
    env = dict(os.environ, ROLE=role, WORKER_SECRET=SECRET, RUST_LOG=os.environ.get("BENCH_LOG", "warn"))
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for(name, lambda: healthy(port))
    return proc, port


def start_haproxy(work, webs):
    port = free_port()
    env = dict(os.environ, DUET_LISTEN=f"127.0.0.1:{port}", DUET_WEB1=f"127.0.0.1:{webs[0]}",
               DUET_WEB2=f"127.0.0.1:{webs[-1]}")
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    log = open(os.path.join(work, "haproxy.log"), "w")
    proc = subprocess.Popen([exe, "-W", "-db", "-f", os.path.join(ROOT, "deploy/haproxy.cfg")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_for("haproxy", lambda: healthy(port, need_ok=True), seconds=60)
    return proc, port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    load_args = sys.argv[1:]
    for exe in (SERVER, LOAD):
        if not os.path.exists(exe):
            sys.exit(f"{exe} missing: run through bench/run.sh load --cluster (it builds both)")
    work = tempfile.mkdtemp(prefix="duet-bench-cluster-")
    os.chmod(work, 0o755)  # Postgres runs as its own user when this runs as root
    pg = Postgres(work)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
    procs, results = [redis], []
    try:
        shared = ["--database-url", pg.fresh("cluster"), "--redis-url", f"redis://127.0.0.1:{redis_port}",
                  "--auth-required", "false", "--account-requests-per-minute", "0", "--user-requests-per-minute", "0",
                  "--account-concurrent-generations", "0", "--user-concurrent-generations", "0"]
        for i in range(2):
            procs.append(start_duet(work, f"worker{i + 1}", "worker", [*shared, "--use-mocks", "true"])[0])
        webs = []
        for size in (1, 2):
            proc, port = start_duet(work, f"web{size}", "web", shared)
            procs.append(proc)
            webs.append(port)
            haproxy, front = start_haproxy(work, webs)
            print(f"\n==> {size} web process{'es' if size > 1 else ''} behind HAProxy, 2 mock workers", flush=True)
            out = subprocess.run([LOAD, "--url", f"http://127.0.0.1:{front}", "--mode", "chat", "--json", *load_args],
                                 check=True, capture_output=True, text=True).stdout
            report = json.loads(out.strip().splitlines()[-1])
            print(json.dumps(report, indent=1))
            results.append((size, report))
            stop(haproxy)
        print("\n==> summary: chat sessions through HAProxy, mock workers")
        # Replies/s counts the 200s only: a refusal (503) is quick, and would flatter requests/s.
        print(f"{'webs':>4} {'req/s':>8} {'replies/s':>10} {'JSON p50':>9} {'JSON p95':>9} {'TTFT p50':>9} {'TTFT p95':>9}"
              "  statuses / errors")
        replies = []
        for size, r in results:
            plain, ttft = r["plain_latency_ms"], r["stream_ttft_ms"]
            replies.append(r["by_status"].get("200", 0) * r["throughput_rps"] / max(r["requests"], 1))
            print(f"{size:>4} {r['throughput_rps']:>8.1f} {replies[-1]:>10.1f} {plain['p50']:>9.1f} {plain['p95']:>9.1f} "
                  f"{ttft['p50']:>9.1f} {ttft['p95']:>9.1f}  {r['by_status']} / {r['errors'] or 'none'}")
        if len(results) == 2:
            print(f"2 web processes / 1: {results[1][1]['throughput_rps'] / results[0][1]['throughput_rps']:.2f}x requests/s, "
                  f"{replies[1] / max(replies[0], 1e-9):.2f}x replies/s")
    finally:
        for proc in reversed(procs):
            stop(proc)
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
