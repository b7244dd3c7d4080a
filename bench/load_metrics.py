#!/usr/bin/env python3
"""What keeping Prometheus metrics costs: the mock-mode chat load (bench/load/, duet-load) against
a server with metrics off and one with METRICS_ADDR set (scraped every second while it runs, far
more often than a usual 15 s), alternating off/on in each round so drift hits both alike. Prints
requests/s and P95 latencies of each, the median over the rounds, and on/off ratios.

Run through `bench/run.sh load --metrics-compare [--rounds N] [duet-load options]` (it builds the
release binaries first). Standard library only."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/server")
LOAD = os.path.join(ROOT, "target/release/duet-load")


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return res.read().decode()


def start_server(data, metrics, sessions):
    port = free_port()
    # Room for every session's reply, so the load measures answers rather than 503s.
    args = [SERVER, "--addr", f"127.0.0.1:{port}", "--data-dir", data, "--use-mocks", "true",
            "--chat-concurrency", str(sessions),
            "--auth-required", "false", "--account-requests-per-minute", "0", "--user-requests-per-minute", "0",
            "--account-concurrent-generations", "0", "--user-concurrent-generations", "0"]
    metrics_port = None
    if metrics:
        metrics_port = free_port()
        args += ["--metrics-addr", f"127.0.0.1:{metrics_port}"]
    env = dict(os.environ, RUST_LOG="warn")
    log = open(os.path.join(data, "server.log"), "w")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if '"status":"ok"' in get(f"http://127.0.0.1:{port}/health"):
                return proc, port, metrics_port
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"the server stopped; see {data}/server.log")
        time.sleep(0.1)
    sys.exit("the server did not become ready")


def scrape_every_second(metrics_port, stop, sizes):
    while not stop.is_set():
        try:
            sizes.append(len(get(f"http://127.0.0.1:{metrics_port}/metrics")))
        except OSError as err:
            print(f"scrape failed: {err}", file=sys.stderr)
        stop.wait(1.0)


def run_once(metrics, load_args):
    sessions = load_args[load_args.index("--sessions") + 1]
    with tempfile.TemporaryDirectory(prefix="duet-load-metrics-") as data:
        proc, port, metrics_port = start_server(data, metrics, sessions)
        stop, sizes = threading.Event(), []
        scraper = None
        if metrics:
            scraper = threading.Thread(target=scrape_every_second, args=(metrics_port, stop, sizes))
            scraper.start()
        try:
            out = subprocess.run([LOAD, "--url", f"http://127.0.0.1:{port}", "--mode", "chat", "--json", *load_args],
                                 capture_output=True, text=True, check=True).stdout
        finally:
            stop.set()
            if scraper:
                scraper.join()
            proc.terminate()
            proc.wait()
        report = json.loads(out)
        report["scrapes"] = len(sizes)
        report["scrape_bytes"] = max(sizes, default=0)
        return report


def summary(reports):
    med = lambda key: statistics.median(key(r) for r in reports)
    return {
        "rps": med(lambda r: r["throughput_rps"]),
        "plain_p95": med(lambda r: r["plain_latency_ms"]["p95"]),
        "ttft_p95": med(lambda r: r["stream_ttft_ms"]["p95"]),
        "stream_p95": med(lambda r: r["stream_total_ms"]["p95"]),
        "non_200": sum(sum(n for s, n in r["by_status"].items() if s != "200") for r in reports),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args, load_args = parser.parse_known_args()
    defaults = {"--duration": "20", "--sessions": "64", "--think-ms": "0"}
    for flag, value in defaults.items():
        if flag not in load_args:
            load_args += [flag, value]
    runs = {False: [], True: []}
    for round_ in range(args.rounds):
        order = [False, True] if round_ % 2 == 0 else [True, False]
        for metrics in order:
            report = run_once(metrics, load_args)
            runs[metrics].append(report)
            print(f"round {round_ + 1} metrics {'on ' if metrics else 'off'}: {report['throughput_rps']:.1f} req/s, "
                  f"P95 JSON {report['plain_latency_ms']['p95']:.1f} ms, "
                  f"P95 first token {report['stream_ttft_ms']['p95']:.1f} ms, by status {report['by_status']}"
                  + (f", {report['scrapes']} scrapes of {report['scrape_bytes']} bytes" if metrics else ""),
                  flush=True)
    off, on = summary(runs[False]), summary(runs[True])
    print(f"\nmock chat load, {' '.join(load_args)}; median of {args.rounds} rounds")
    print(f"{'':<28}{'metrics off':>14}{'metrics on':>14}{'on/off':>10}")
    rows = [("requests/s", "rps"), ("P95 JSON reply (ms)", "plain_p95"), ("P95 first token (ms)", "ttft_p95"),
            ("P95 streamed reply (ms)", "stream_p95")]
    for name, key in rows:
        print(f"{name:<28}{off[key]:>14.1f}{on[key]:>14.1f}{on[key] / off[key]:>10.3f}")
    print(f"{'answers other than 200':<28}{off['non_200']:>14}{on['non_200']:>14}")


if __name__ == "__main__":
    main()
