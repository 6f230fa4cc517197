#!/usr/bin/env python3
"""test_serve_load.py - `deeplab serve` under faults and under load, on loopback, bounded in time.

Faults, each followed by a normal request that must still be answered:
  malformed, truncated and wrongly typed bodies get their 400/413/415, or the connection is
  closed; a client that trickles its headers or its body is cut off at --header-timeout or
  --upload-timeout while others are served; clients that vanish mid-upload, while queued and
  mid-download are dropped (the queued one's work is not run: deeplab_dropped_total counts it).
Load: 16 clients post photos of one size for 60 s (20 s in the sanitizer build, which is several times
  slower; DEEPLAB_LOAD_SECONDS overrides) against --queue 8: every answer must be 200, or 503
  with Retry-After; waiting photos must run in batches; p50 and p99 latency are printed, and the
  server's resident memory after
  2000 requests must be within 10% of what it was after 200 (a server that leaks per request
  fails; not under the sanitizers, whose quarantine holds freed memory, and whose leak checker
  looks at the end instead). Then the server answers normally and exits 0 on SIGTERM.
Exit 0 = pass, 1 = fail, 77 = skip.
"""
import os
import socket
import sys
import threading
import time

import requests

import dlref
import serve_util

T = dlref.TMP
expect = dlref.expect


def raw(port, data, read=True, timeout=10):
    """Sends bytes on a new connection; the status of the answer (0: closed without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return s
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        return int(got.split()[1]) if got.startswith(b"HTTP/1.") else 0
    except OSError:
        s.close()
        return 0


def form(photo, boundary=b"deeplab-fault-test"):
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image_file"; filename="p.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + photo + b"\r\n--" + boundary + b"--\r\n")


def head(length, ctype=b"multipart/form-data; boundary=deeplab-fault-test", path=b"/v1.0/removebg"):
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\nContent-Length: " + \
        str(length).encode() + b"\r\n\r\n"


def closed_within(s, seconds):
    """Seconds until the server closes s (reads whatever it sends), or None past `seconds`."""
    t0 = time.time()
    s.settimeout(0.5)
    while time.time() - t0 < seconds:
        try:
            if not s.recv(65536):
                return time.time() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.time() - t0
    return None


def main():
    why = serve_util.serve_available()
    if why:
        print(f"SKIP: {why}")
        return 77
    st = serve_util.small_model()
    photo = os.path.join(T, "photo.png")
    dlref.photo(48, 36, 3).save(photo)
    data = open(photo, "rb").read()
    big = os.path.join(T, "big.png")
    dlref.photo(900, 700, 4).save(big)
    big_data = open(big, "rb").read()
    sanitized = "asan" in os.environ.get("BUILD_DIR", "") or "asan" in T
    seconds = float(os.environ.get("DEEPLAB_LOAD_SECONDS", 20 if sanitized else 60))
    with serve_util.Server(["-w", st, "--size", "0", "--queue", "8", "--max-batch", "4", "--header-timeout", "2",
                            "--upload-timeout", "4", "--max-body", "4000000", "--access-log",
                            os.path.join(T, "access.log")], name="serve") as s:
        api = s.url + "/v1.0/removebg"

        def still_serving(what):
            try:
                r = requests.post(api, files={"image_file": ("p.png", data)}, data={"size": "full"}, timeout=60)
                ok = r.status_code == 200
            except requests.RequestException as e:
                ok, r = False, e
            expect(ok, f"{what}; then a normal request is answered ({getattr(r, 'status_code', r)})")

        # bodies that are wrong
        st_ = raw(s.port, head(len(form(data)) + 20) + form(data)[:-8] + b"garbage!" * 3 + b"\r\n\r\n")
        still_serving(f"a multipart body with a broken end: {st_}")
        junk = b"--deeplab-fault-test\r\nnot a part header at all" + b"x" * 11
        st_ = raw(s.port, head(len(junk)) + junk)
        still_serving(f"a multipart body with no part headers: {st_}")
        expect(st_ == 400, f"... answered 400 ({st_})")
        cut = b'{"image_file_b64": "' + b"A" * 1978 + b'"'  # no closing brace
        st_ = raw(s.port, head(len(cut), b"application/json") + cut)
        expect(st_ == 400, f"a JSON body cut short (whole, but its closing brace missing): 400 ({st_})")
        sk = raw(s.port, head(100000) + form(data)[:500], read=False)
        sk.close()
        still_serving("a body cut off after 500 of 100000 bytes (the client went away)")
        st_ = raw(s.port, head(5000000) + b"x" * 1000)
        expect(st_ == 413, f"a declared length over --max-body: 413 at once ({st_})")
        for ctype in (b"text/plain", b"image/png", b"application/xml"):
            st_ = raw(s.port, head(len(data), ctype) + data)
            expect(st_ == 415, f"Content-Type {ctype.decode()}: 415 ({st_})")
        st_ = raw(s.port, b"POST /v1.0/removebg HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        expect(st_ in (0, 400), f"a Content-Length that is no number: 400 or closed ({st_})")
        st_ = raw(s.port, b"GARBAGE\r\n\r\n")
        still_serving(f"a request line that is no HTTP: {st_}")

        # slow senders: headers and bodies trickled, many at once, while others are served
        slow = [raw(s.port, b"POST /v1.0/removebg HTTP/1.1\r\nHost: x\r\n", read=False) for _ in range(20)]
        slow_body = raw(s.port, head(len(form(data))) + form(data)[:100], read=False)
        t0 = time.time()
        still_serving("20 connections trickling their headers and one its body")
        served = time.time() - t0
        expect(served < 5, f"... served in {served:.2f} s meanwhile")
        waits = [closed_within(k, 8) for k in slow]
        expect(all(w is not None and w <= 2 + 1.5 for w in waits),
               f"headers not in within --header-timeout 2: closed after {max(w or 99 for w in waits):.1f} s at most")
        w = closed_within(slow_body, 8)
        expect(w is not None and time.time() - t0 <= 4 + 2, f"a body not in within --upload-timeout 4: closed "
                                                            f"({time.time() - t0:.1f} s after it began)")
        trickle = raw(s.port, b"POST /v1.0/removebg HTTP/1.1\r\n", read=False)
        t1 = time.time()
        for _ in range(6):  # one byte every half second: never idle long, but never done either
            try:
                trickle.sendall(b"X")
            except OSError:
                break
            time.sleep(0.5)
        expect(closed_within(trickle, 4) is not None and time.time() - t1 < 2 + 4,
               "one header byte every 0.5 s is cut off at the header deadline too")
        for k in slow + [slow_body, trickle]:
            k.close()

        # clients that vanish: mid-upload (above), while queued, mid-download
        blocker = threading.Thread(target=lambda: requests.post(api, files={"image_file": ("b.png", big_data)},
                                                                data={"size": "full"}, timeout=120))
        blocker.start()
        time.sleep(0.3)
        gone = raw(s.port, head(len(form(data))) + form(data), read=False)  # queued behind the big photo
        time.sleep(0.2)
        gone.close()
        blocker.join(120)
        time.sleep(0.5)
        m = requests.get(s.url + "/metrics", timeout=10).text
        dropped = [l for l in m.splitlines() if l.startswith("deeplab_dropped_total")]
        expect(dropped and int(dropped[0].split()[1]) >= 1, f"a client gone while queued: its work dropped ({dropped})")
        req = head(len(form(big_data))) + form(big_data)
        dl = raw(s.port, req.replace(b"Content-Length", b"Accept: image/png\r\nContent-Length"), read=False)
        dl.settimeout(60)
        first = dl.recv(1000)
        dl.close()
        still_serving(f"a client gone after {len(first)} bytes of a large answer")

        # load
        lock = threading.Lock()
        results, rss = [], {}
        stop = time.time() + seconds

        def client(i):
            sess = requests.Session()
            while time.time() < stop:
                t = time.time()
                try:
                    r = sess.post(api, files={"image_file": ("p.png", data)}, data={"size": "full"}, timeout=60)
                    item = (r.status_code, time.time() - t, r.headers.get("Retry-After"))
                except requests.RequestException as e:
                    item = (str(e)[:80], time.time() - t, None)
                with lock:
                    results.append(item)
                    n = len(results)
                    if n in (200, 2000):
                        rss[n] = s.rss_kb()
                if item[0] == 503:
                    time.sleep(0.05)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [r for r in results if r[0] == 200]
        busy = [r for r in results if r[0] == 503]
        bad = [r for r in results if r[0] not in (200, 503) or (r[0] == 503 and not (r[2] or "").isdigit())]
        lat = sorted(r[1] for r in ok)
        p50 = lat[len(lat) // 2] if lat else 0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0
        print(f"load: 16 clients, {seconds:.0f} s: {len(results)} requests, {len(ok)} 200, {len(busy)} 503; "
              f"latency of the 200s p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms; "
              f"{len(ok) / seconds:.1f} cut-outs/s; resident memory after 200 requests {rss.get(200, 0) / 1024:.1f} MB, "
              f"after 2000 {rss.get(2000, 0) / 1024:.1f} MB")
        expect(not bad and len(ok) > 0, f"under load every answer is 200 or 503 with Retry-After ({len(bad)} others: "
                                        f"{bad[:3]})")
        if sanitized:  # the sanitizers' allocator keeps freed memory in quarantine: resident memory grows
            print("memory: not checked under the sanitizers (their quarantine holds freed blocks)")
        elif 2000 in rss:
            grow = (rss[2000] - rss[200]) / rss[200]
            expect(abs(grow) <= 0.10, f"memory after 2000 requests within 10% of after 200 ({100 * grow:+.1f}%)")
        else:
            expect(False, f"2000 requests in {seconds:.0f} s ({len(results)}): the memory check needs them")
        m = requests.get(s.url + "/metrics", timeout=10).text
        val = {l.split()[0]: float(l.split()[1]) for l in m.splitlines() if l.startswith("deeplab_batch_size_")}
        n, photos = val.get("deeplab_batch_size_count", 0), val.get("deeplab_batch_size_sum", 0)
        expect(n > 0 and photos > n, f"photos of one size that waited together ran as batches: {photos:.0f} photos in "
                                     f"{n:.0f} forward passes (--max-batch 4)")
        still_serving("after the load")
        expect(s.stop() == 0, "SIGTERM: exit 0")
    return dlref.summary("serve load and fault checks")


if __name__ == "__main__":
    sys.exit(main())
