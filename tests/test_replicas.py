#!/usr/bin/env python3
"""test_replicas.py - two `deeplab serve` replicas behind Debian's nginx, with deploy/nginx/deeplab.conf
itself (its ports replaced by free loopback ones).

  - steady load: 4 clients post cut-outs to nginx; after 3 s (2 under the sanitizers) replica 1
    is killed with SIGKILL (cutting off the requests it holds: nginx's error log says so), 4 s
    (2) later started again on its port, and the load goes on 6 s after it is ready. Every answer is the exact cut-out (the bytes a
    replica gives for the photo when asked directly) or a clean 502/503 (complete, small, not an
    image); none is wrong or truncated; 90% at least are cut-outs (nginx retries on the live
    replica); replica 1 answers again once restarted
  - SIGTERM: replica 0 with 3 cut-outs in flight through nginx is sent SIGTERM; each of them gets
    the exact cut-out, replica 0 exits 0, and nginx sends what follows to replica 1
  - sessions (--session-prefix 00 and 01): sessions made through nginx land on either replica,
    their ids beginning with its prefix; their renders through nginx succeed (they reach the
    replica holding them), while the other replica, asked directly, does not know them (404)
  - --device cuda:N: a usage error for a bad N or one outside CUDA_VISIBLE_DEVICES (64; on the
    emulated GPU, any N but 0); cuda:0 does what --device cuda does (here: exit 69 without a
    GPU, or the missing weights on the emulated one)
Skips when nginx is not installed (tools/install-deps.sh installs it). Exit 0 = pass, 1 = fail.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import requests

import dlref
import nginx_util
import serve_util

T = dlref.TMP
expect = dlref.expect
SANITIZED = "asan" in os.environ.get("BUILD_DIR", "") or "asan" in T


def cutout(url, data, timeout=60):
    """(status, body or None, what): a POST of the photo; body None if the answer broke off."""
    try:
        r = requests.post(url + "/v1.0/removebg", files={"image_file": ("p.png", data)}, data={"size": "full"},
                          timeout=timeout)
        return r.status_code, r.content, r.headers.get("Content-Type", "")
    except requests.RequestException as e:
        return None, None, f"{type(e).__name__}: {e}"


def main():
    if not nginx_util.available():
        print("SKIP: nginx is not installed (tools/install-deps.sh installs it)")
        return 77
    why = serve_util.serve_available()
    if why:
        print(f"SKIP: {why}")
        return 77

    # --device cuda:N, without a server (rmbg reads its options as serve does: cli_parse_device)
    emulated = "emulated GPU" in subprocess.run([dlref.DEEPLAB, "--version"], capture_output=True, text=True).stdout
    tiny = os.path.join(T, "tiny.png")
    dlref.photo(20, 16, 1).save(tiny)
    cases = [(["--device", "cuda:x"], {}, "cuda:N")]
    if emulated:
        cases += [(["--device", "cuda:1"], {}, "the emulated GPU is cuda:0 alone")]
    else:
        cases += [(["--device", "cuda:1"], {"CUDA_VISIBLE_DEVICES": "3"}, "leaves 1 GPU"),
                  (["--device", "cuda:0"], {"CUDA_VISIBLE_DEVICES": ""}, "leaves 0 GPU")]
    for args, env, text in cases:
        p = subprocess.run([dlref.DEEPLAB, "rmbg"] + args + ["-o", os.path.join(T, "x.png"), tiny],
                           capture_output=True, text=True, env=dict(os.environ, **env))
        expect(p.returncode == 64 and text in p.stderr, f"{' '.join(args)} {env}: 64, {p.stderr.strip()}")
    got = []
    for dev in ("cuda", "cuda:0"):
        p = subprocess.run([dlref.DEEPLAB, "rmbg", "--device", dev, "-o", os.path.join(T, "x.png"), tiny],
                           capture_output=True, text=True, env=dict(os.environ, DEEPLAB_WEIGHTS="/nonexistent"))
        got.append((p.returncode, p.stderr.strip()))
    expect(got[0] == got[1] and got[0][0] != 64, f"--device cuda:0 does what --device cuda does here: {got[1]}")

    st = serve_util.small_model()
    photo = os.path.join(T, "photo.png")
    dlref.photo(64, 48, 3).save(photo)
    data = open(photo, "rb").read()
    ports = [nginx_util.free_port(), nginx_util.free_port()]
    common = ["-w", st, "--size", "32", "--threads", "1", "--queue", "16", "--drain-timeout", "30"]
    servers = [None, None]
    nginx = None

    def start(i):
        servers[i] = serve_util.Server(common + ["--port", ports[i], "--session-prefix", f"0{i}",
                                                 "--access-log", os.path.join(T, f"access{i}.log")],
                                       name=f"replica{i}-{time.time():.0f}")
        # Server passes --port 0 first; the later --port wins
        expect(servers[i].port == ports[i], f"replica {i} on its port {ports[i]}")

    try:
        start(0)
        start(1)
        nginx = nginx_util.Nginx(ports, T)
        lb = nginx.url
        want = cutout(servers[0].url, data)
        want1 = cutout(servers[1].url, data)
        expect(want[0] == 200 and want[2] == "image/png" and want1[1] == want[1],
               f"both replicas give the same cut-out ({len(want[1] or b'')} bytes)")
        want = want[1]

        # steady load; replica 1 killed, then restarted
        # before the kill, replica 1 down, after it is ready again (nginx leaves a failed replica out
        # for fail_timeout, 5 s, before trying it again)
        phases = (2, 2, 6) if SANITIZED else (3, 4, 6)
        results, stop = [], threading.Event()
        lock = threading.Lock()

        def client():
            while not stop.is_set():
                t = time.time()
                status, body, what = cutout(lb, data)
                with lock:
                    results.append((t, status, body, what))

        threads = [threading.Thread(target=client) for _ in range(4)]
        t0 = time.time()
        for th in threads:
            th.start()
        time.sleep(phases[0])
        servers[1].proc.send_signal(signal.SIGKILL)
        servers[1].proc.wait()
        killed_at = time.time()
        time.sleep(phases[1])
        start(1)
        restarted_at = time.time()
        log1_at = os.path.getsize(os.path.join(T, "access1.log"))
        time.sleep(phases[2])
        stop.set()
        seconds = round(time.time() - t0)
        for th in threads:
            th.join()
        good = sum(1 for r in results if r[1] == 200 and r[2] == want)
        clean = [r for r in results if r[1] in (502, 503) and r[2] is not None and len(r[2]) < 4096
                 and not r[2].startswith(b"\x89PNG")]
        bad = [r for r in results if not (r[1] == 200 and r[2] == want) and r not in clean]
        expect(results and not bad, f"{len(results)} requests in {seconds} s: {good} exact cut-outs, {len(clean)} clean "
                                    f"502/503, {len(bad)} wrong or broken "
                                    f"{[(r[1], r[3] if r[2] is None else len(r[2])) for r in bad[:3]]}")
        expect(good >= 0.9 * len(results), f"nginx retried on the live replica: {good} of {len(results)} cut-outs")
        with open(os.path.join(T, "access1.log")) as f:
            f.seek(log1_at)
            since = f.read().count("POST /v1.0/removebg")
        expect(killed_at < restarted_at and since > 0,
               f"replica 1, restarted, answers again: {since} cut-outs in its access log since")
        errors = nginx.error_log()
        cut = errors.count("prematurely closed") + errors.count("reset by peer")
        expect(cut > 0, f"the kill cut requests off mid-way ({cut} in nginx's error log; "
                        f"{errors.count('Connection refused')} refused connections), and nginx retried them")

        # sessions: made anywhere, rendered where they live
        ids = []
        for _ in range(6):
            r = requests.post(lb + "/v1/sessions", files={"image_file": ("p.png", data)}, timeout=60)
            ids.append(r.json().get("id", "") if r.status_code == 201 else f"status {r.status_code}")
        on = [sid[:2] for sid in ids]
        expect(all(re.fullmatch(r"0[01][0-9a-f]{30}", sid) for sid in ids) and set(on) == {"00", "01"},
               f"6 sessions through nginx, on both replicas by their ids' prefixes: {on}")
        ok = True
        for sid in ids:
            r = requests.post(f"{lb}/v1/sessions/{sid}/render", json={"classes": ["person"]}, timeout=60)
            other = servers[1 if sid.startswith("00") else 0].url
            o = requests.post(f"{other}/v1/sessions/{sid}/render", json={"classes": ["person"]}, timeout=60)
            ok = ok and r.status_code == 200 and r.content.startswith(b"\x89PNG") and o.status_code == 404
        expect(ok, "every session's render through nginx reaches its replica (200); the other replica: 404")

        # SIGTERM with requests in flight through nginx
        before = open(os.path.join(T, "access0.log")).read().count("removebg")
        drained = []

        def one():
            drained.append(cutout(lb, data))

        flight = [threading.Thread(target=one) for _ in range(6)]
        for th in flight:
            th.start()
        deadline = time.time() + 30
        while time.time() < deadline and "deeplab_queue_depth 0" in requests.get(servers[0].url + "/metrics",
                                                                                    timeout=10).text:
            time.sleep(0.01)
        servers[0].proc.send_signal(signal.SIGTERM)
        for th in flight:
            th.join()
        rc = servers[0].proc.wait(60)
        served0 = open(os.path.join(T, "access0.log")).read().count("removebg") - before
        expect(all(d[0] == 200 and d[1] == want for d in drained) and rc == 0 and served0 >= 1,
               f"SIGTERM: replica 0 finished its {served0} in flight and exited {rc}; all 6 exact cut-outs "
               f"({[d[0] for d in drained]})")
        r = cutout(lb, data)
        expect(r[0] == 200 and r[1] == want, "after replica 0 exits, nginx sends the next cut-out to replica 1")
        for s in servers:
            if s and s.proc.poll() is None:
                expect(s.stop() == 0, "replica stopped with SIGTERM: exit 0")
    finally:
        for s in servers:
            if s:
                s.kill()
        if nginx:
            nginx.stop()
    return dlref.summary("replica checks")


if __name__ == "__main__":
    sys.exit(main())
