#!/usr/bin/env python3
"""bench_scale.py - the throughput of 1, 2, 4 ... `deeplab serve` replicas on the CPU behind nginx.

    /usr/bin/python3 tools/bench_scale.py [-w W.safetensors] [--replicas 1,2,4] [--seconds 60]
                                          [--clients 0] [--out bench/results]

For each replica count N: N replicas on loopback (`deeplab serve --device cpu --threads C/N`, C the
cores, each its share of them; --queue 64), nginx in front with deploy/nginx/deeplab.conf (the
balanced upstream listing the N replicas), and a closed loop of clients (default 2N + 2, enough to
keep every replica's queue non-empty) posting the same 693x520 photo (so --size 520 resizes
nothing; size=full) for --seconds after a warm-up of two cut-outs per replica. Reports cut-outs per
second, the latency's median and 95th percentile, and the replicas' resident memory; every answer
must be the exact cut-out (a wrong or failed one stops the run).

Without -w a seeded random ResNet-101 is made with torchvision (timings do not depend on the
values). Prints the machine, the load average before and after, the commit; refuses to run when
the load average is 1 or more before it starts (others' work would be measured), unless --force.
With --out writes the numbers as JSON there.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPLAB = os.environ.get("DEEPLAB", os.path.join(ROOT, "bin", "deeplab"))
os.environ["DEEPLAB"] = DEEPLAB
sys.path.insert(0, os.path.join(ROOT, "tests"))
# scratch under build/ (serve_util keeps the random model in build/test-cache/, beside it)
os.environ.setdefault("TEST_TMP", os.path.join(ROOT, "build", "bench-tmp", "scale"))
os.makedirs(os.environ["TEST_TMP"], exist_ok=True)
import dlref  # noqa: E402
import nginx_util  # noqa: E402
import requests  # noqa: E402
import serve_util  # noqa: E402


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def post(url, data):
    t = time.perf_counter()
    r = requests.post(url + "/v1.0/removebg", files={"image_file": ("p.png", data)}, data={"size": "full"},
                      timeout=600)
    return r.status_code, r.content, time.perf_counter() - t


def measure(n, weights, data, size, seconds, clients, tmp):
    cores = os.cpu_count() or 1
    threads = max(1, cores // n)
    servers = []
    try:
        for i in range(n):
            servers.append(serve_util.Server(["-w", weights, "--device", "cpu", "--threads", threads, "--size", size,
                                              "--queue", "64", "--session-prefix", f"{i:02x}", "--access-log", "none"],
                                             name=f"scale-{n}-{i}", timeout=600))
        with nginx_util.Nginx([s.port for s in servers], tmp) as lb:
            want = post(servers[0].url, data)[1]
            for _ in range(2 * n):  # warm every replica (its first forward pass is a cold one)
                status, body, _ = post(lb.url, data)
                if status != 200 or body != want:
                    raise RuntimeError(f"warm-up: {status}")
            lat, bad, stop, lock = [], [], threading.Event(), threading.Lock()
            clients = clients or 2 * n + 2

            def client():
                while not stop.is_set():
                    status, body, dt = post(lb.url, data)
                    with lock:
                        if status == 200 and body == want:
                            lat.append((time.perf_counter(), dt))
                        else:
                            bad.append(status)

            ths = [threading.Thread(target=client) for _ in range(clients)]
            t0 = time.perf_counter()
            for th in ths:
                th.start()
            time.sleep(seconds)
            stop.set()
            t1 = time.perf_counter()
            for th in ths:
                th.join()
            if bad:
                raise RuntimeError(f"{len(bad)} wrong answers: {bad[:5]}")
            done = [dt for t, dt in lat if t <= t1]  # answered within the window
            rss = [s.rss_kb() / 1024 for s in servers]
            q = statistics.quantiles(done, n=20) if len(done) >= 2 else [0] * 19
            return {"replicas": n, "threads_each": threads, "clients": clients, "seconds": round(t1 - t0, 2),
                    "cutouts": len(done), "per_second": round(len(done) / (t1 - t0), 3),
                    "latency_median_s": round(statistics.median(done), 3) if done else None,
                    "latency_p95_s": round(q[18], 3), "resident_mb_each": [round(r) for r in rss]}
    finally:
        for s in servers:
            s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-w", "--weights")
    ap.add_argument("--replicas", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=0)
    ap.add_argument("--size", type=int, default=520)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if not nginx_util.available():
        sys.exit("bench_scale: nginx is not installed (tools/install-deps.sh)")
    before = loadavg()
    if before >= 1 and not a.force:
        sys.exit(f"bench_scale: load average {before:.2f}: the machine is busy, the numbers would be others' "
                 f"(--force runs anyway)")
    tmp = os.environ["TEST_TMP"]
    weights = a.weights or serve_util.small_model(seed=7, arch="resnet101")
    photo = os.path.join(tmp, "photo.png")
    dlref.photo(693, 520, 5).save(photo)
    data = open(photo, "rb").read()
    commit = subprocess.run([DEEPLAB, "--version"], capture_output=True, text=True).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; {commit}; load average {before:.2f} before")
    rows = []
    for n in [int(x) for x in a.replicas.split(",")]:
        r = measure(n, weights, data, a.size, a.seconds, a.clients, tmp)
        rows.append(r)
        print(f"{n} replica(s) x {r['threads_each']} threads, {r['clients']} clients: {r['per_second']:.3f} cut-outs/s "
              f"({r['cutouts']} in {r['seconds']} s), latency median {r['latency_median_s']} s, "
              f"p95 {r['latency_p95_s']} s, resident {r['resident_mb_each']} MB each", flush=True)
    after = loadavg()
    print(f"load average {after:.2f} after (this run's own load included)")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M")
        path = os.path.join(a.out, f"scale-cpu-{stamp}.json")
        with open(path, "w") as f:
            json.dump({"machine": cpu, "cores": os.cpu_count(), "version": commit, "load_before": before,
                       "load_after": after, "photo": "693x520 PNG, size=full", "size": a.size, "rows": rows}, f,
                      indent=1)
        print(f"written: {path}")


if __name__ == "__main__":
    main()
