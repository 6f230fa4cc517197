#!/usr/bin/env python3
"""test_serve_api.py - `deeplab serve` through real clients (curl, Python's requests), on loopback.

Every parameter of POST /v1.0/removebg (remove.bg's API), POST /api/remove (rembg's server) and
the editing sessions is sent with a good value, and its answer must be, byte for byte, what
`deeplab rmbg` writes for the same photo and the equivalent options (the API and rmbg fill one
cut-out request, engine/deeplab.h); with a bad value it must be remove.bg's error: the status,
{"errors": [{"title", "code", "detail"}]} and the code. Then the errors that do not depend on a
parameter: a missing or doubled source, a file that is no image, an image or a body over the
limits, an unknown parameter, a wrong content type or method, no or a wrong API key (403), a full
queue (503 + Retry-After), a client over its share (429), an evicted or expired session (410);
CORS only with --cors; /healthz, /readyz, /metrics, /openapi.json; one access-log line per
request; SIGTERM finishes the request in flight and exits 0.

The model is the seeded random ResNet-50 of test_rmbg (tests/dlref.py, serve_util.small_model);
photos are small so that each request takes milliseconds. Exit 0 = pass, 1 = fail, 77 = skip.
"""
import base64
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import requests
from PIL import Image

import dlref
import serve_util

T = dlref.TMP
expect = dlref.expect
ST = PHOTO = None
NET = "32"  # the network's input (--size for serve and rmbg alike): small, so that a forward pass is
            # milliseconds even in the sanitizer build; the cut-out is still made at the photo's size
rmbg_runs = 0


def rmbg(args, name):
    """The bytes `deeplab rmbg -w ST --size NET ARGS -o NAME PHOTO` writes."""
    global rmbg_runs
    rmbg_runs += 1
    out = os.path.join(T, name)
    photo = PHOTO
    if args and args[0] == "--photo":
        photo, args = args[1], args[2:]
    p = subprocess.run([dlref.DEEPLAB, "rmbg", "-w", ST, "--size", NET] + [str(a) for a in args] + ["-o", out, photo],
                       capture_output=True, text=True)
    if p.returncode != 0:
        expect(False, f"rmbg {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()}")
        return None
    with open(out, "rb") as f:
        return f.read()


def post(url, fields=None, files=None, **kw):
    """A multipart POST (requests); fields: dict or list of pairs; files: name -> (path or bytes)."""
    fl = {}
    for k, v in (files or {}).items():
        fl[k] = (os.path.basename(v), open(v, "rb").read(), "application/octet-stream") if isinstance(v, str) else ("f", v)
    kw.setdefault("timeout", 60)
    return requests.post(url, data=fields or {}, files=fl or None, **kw)


def error_of(r):
    try:
        return r.json()["errors"][0]
    except Exception:
        return {}


def check_error(r, status, code, what, word=None):
    e = error_of(r)
    ok = r.status_code == status and e.get("code") == code and e.get("title") and e.get("detail")
    ok = ok and (word is None or word in e.get("detail", ""))
    expect(ok, f"{what}: {r.status_code} {code} ({e.get('detail', r.text[:120])})")


def same(got, want, what):
    ok = got is not None and want is not None and got == want
    expect(ok, f"{what}: the API's bytes are rmbg's ({len(got or b'')} bytes)")


TYPES = {"person": ["person"], "animal": ["bird", "cat", "cow", "dog", "horse", "sheep"], "car": ["car"],
         "transportation": ["aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"],
         "product": ["bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"]}


def wait_queued(url, timeout=30):
    """Until /metrics says a request is admitted (the slow one sent by another thread)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if "deeplab_queue_depth 0" not in requests.get(url + "/metrics", timeout=10).text:
            return
        time.sleep(0.02)


def chunked_upload(port, path, chunks):
    """A multipart body sent in chunks of 10000 bytes on a raw socket, looking for an answer after
    each (a server that answers early closes the connection: a client that only reads at the end
    would see a reset). Returns (status, the answer's text)."""
    import select
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 f"Content-Type: multipart/form-data; boundary=deeplab-test-boundary\r\n\r\n".encode())
    head = b'--deeplab-test-boundary\r\nContent-Disposition: form-data; name="image_file"; filename="a"\r\n\r\n'
    data = b""
    try:
        for i in range(chunks + 1):
            part = head if i == 0 else b"y" * 10000
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            if select.select([sock], [], [], 0.2)[0]:
                break
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    except OSError:
        pass
    sock.close()
    text = data.decode("latin-1")
    try:
        return int(text.split()[1]), text
    except (IndexError, ValueError):
        return 0, text


class Files(http.server.BaseHTTPRequestHandler):
    """image_url's server: /photo.png, /redirect (302 to it), /big (more than --fetch-max-bytes)."""

    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/photo.png")
            self.end_headers()
            return
        data = open(PHOTO, "rb").read() if self.path == "/photo.png" else b"x" * 300000 if self.path == "/big" else None
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def main():
    global ST, PHOTO
    why = serve_util.serve_available()
    if why:
        print(f"SKIP: {why}")
        return 77
    ST = serve_util.small_model()
    W, H = 96, 72
    PHOTO = os.path.join(T, "photo.png")
    dlref.photo(W, H, 3).save(PHOTO)
    big = os.path.join(T, "big.png")
    dlref.photo(600, 450, 5).save(big)
    bg = os.path.join(T, "bg.png")
    dlref.photo(50, 70, 9).save(bg)
    keep = np.zeros((H, W), np.uint8)
    keep[10:30, 20:90] = 255
    erase = np.zeros((H, W), np.uint8)
    erase[40:65, 50:90] = 255
    Image.fromarray(keep).save(os.path.join(T, "keep.png"))
    Image.fromarray(erase).save(os.path.join(T, "erase.png"))
    photo_bytes = open(PHOTO, "rb").read()
    b64 = base64.b64encode(photo_bytes).decode()

    # the command line
    p = subprocess.run([dlref.DEEPLAB, "serve", "--port", "0", "-w", os.path.join(T, "missing.safetensors")],
                       capture_output=True, text=True, timeout=60)
    expect(p.returncode == 66 and "missing.safetensors" in p.stderr and "no model" in p.stderr,
           f"serve -w MISSING: exit 66, the weights named ({p.stderr.strip().splitlines()[-1] if p.stderr else ''})")
    for args, word in [(["--port", "70000"], "--port"), (["--queue", "0"], "--queue"), (["--frobnicate"], "unknown")]:
        p = subprocess.run([dlref.DEEPLAB, "serve"] + args, capture_output=True, text=True, timeout=60)
        expect(p.returncode == 64 and word in p.stderr and p.stderr.count("\n") == 1,
               f"serve {' '.join(args)}: exit 64, one line: {p.stderr.strip()}")

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    furl = f"http://127.0.0.1:{files.server_address[1]}"
    access = os.path.join(T, "access.log")

    with serve_util.Server(["-w", ST, "--size", NET, "--allow-url-fetch", "--fetch-allow", "127.0.0.1/32",
                            "--fetch-max-bytes", "200000", "--access-log", access], name="serve") as s:
        api = s.url + "/v1.0/removebg"
        n_before = len(open(access).read().splitlines())
        requests.get(s.url + "/healthz?mark=start", timeout=10)
        made = 1

        def call(*a, **kw):
            nonlocal made
            made += 1
            return post(*a, **kw)

        # the photo, three ways, and with curl; the headers
        base = rmbg([], "base.png")
        curl = subprocess.run(["curl", "-s", "-D", os.path.join(T, "curl.headers"), "-o", os.path.join(T, "curl.png"),
                               "-F", f"image_file=@{PHOTO}", "-F", "size=full", api], capture_output=True, text=True)
        made += 1
        same(open(os.path.join(T, "curl.png"), "rb").read() if curl.returncode == 0 else None, base,
             "curl -F image_file=@photo.png -F size=full")
        heads = open(os.path.join(T, "curl.headers")).read()
        alpha = np.array(Image.open(io.BytesIO(base)))[..., 3]
        ys, xs = np.nonzero(alpha)
        want = {"x-width": W, "x-height": H, "x-foreground-left": xs.min(), "x-foreground-top": ys.min(),
                "x-foreground-width": xs.max() - xs.min() + 1, "x-foreground-height": ys.max() - ys.min() + 1}
        got = {k.split(":")[0].lower(): k.split(":", 1)[1].strip() for k in heads.splitlines() if ":" in k}
        expect(all(str(v) == got.get(k) for k, v in want.items()) and got.get("content-type") == "image/png" and
               got.get("x-type") in ("person", "animal", "car", "transportation", "product", "other"),
               f"headers X-Width/Height, X-Foreground-*, X-Type ({got.get('x-type')}), Content-Type: {want}")
        t0 = time.monotonic()
        r = call(api, {"size": "full"}, {"image_file": PHOTO})
        latency_ms = 1000 * (time.monotonic() - t0)
        same(r.content, base, "requests, multipart image_file")
        # Server-Timing: the work's parts, each >= 0, together within the client's latency
        timing = dict(re.findall(r"(\w+);dur=([0-9.]+)", r.headers.get("Server-Timing", "")))
        parts = [float(timing.get(k, -1)) for k in ("prep", "network", "cutout", "queue")]
        expect(min(parts) >= 0 and sum(parts) <= latency_ms + 1 and parts[1] > 0 and 'desc="batch of 1"' in
               r.headers.get("Server-Timing", ""), f"Server-Timing {r.headers.get('Server-Timing')!r}: prep, network "
               f"(batch of 1), cutout, queue, summing to at most the latency {latency_ms:.1f} ms")
        made += 1
        r = requests.post(api, json={"image_file_b64": b64, "size": "full"}, headers={"Accept": "application/json"},
                          timeout=60)
        d = r.json().get("data", {}) if r.status_code == 200 else {}
        same(base64.b64decode(d.get("result_b64", "")), base, "JSON body, image_file_b64, Accept: application/json")
        expect(d.get("foreground_left") == want["x-foreground-left"] and d.get("foreground_width") ==
               want["x-foreground-width"], f"result_b64's foreground_* as the headers: {dict((k, v) for k, v in d.items() if k != 'result_b64')}")
        made += 1
        r = requests.post(api, data={"image_file_b64": "data:image/png;base64," + b64, "size": "full"}, timeout=60)
        same(r.content, base, "urlencoded body, image_file_b64 as a data: URL")
        r = call(api, {"image_url": furl + "/photo.png", "size": "full"})
        same(r.content, base, "image_url (--allow-url-fetch --fetch-allow 127.0.0.1/32)")
        r = call(api, {"image_url": furl + "/redirect", "size": "full"})
        same(r.content, base, "image_url through a redirect")
        r = call(api, {"image_url": f"http://127.0.0.2:{files.server_address[1]}/photo.png"})
        check_error(r, 400, "url_download_failed", "image_url at a loopback address outside --fetch-allow", "refused")
        r = call(api, {"image_url": furl + "/big"})
        check_error(r, 400, "url_download_failed", "image_url over --fetch-max-bytes", "more than")
        r = call(api, {"image_url": "file:///etc/passwd"})
        check_error(r, 400, "url_download_failed", "image_url file:///etc/passwd", "http")

        # size: remove.bg's default is preview (0.25 megapixels); rmbg --megapixels is the same
        want_prev = rmbg(["--photo", big, "--megapixels", "0.25"], "preview.png")
        r = call(api, files={"image_file": big})
        same(r.content, want_prev, "no size (remove.bg's default: preview) = rmbg --megapixels 0.25")
        pw, ph = Image.open(io.BytesIO(r.content)).size
        expect(pw * ph <= 250000 and (pw, ph) == (int(600 * (0.25e6 / 270000) ** .5), int(450 * (0.25e6 / 270000) ** .5)),
               f"preview: {pw}x{ph}, 0.25 megapixels at most, the photo's aspect")
        r = call(api, {"size": "medium"}, {"image_file": big})
        expect(r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (600, 450),
               "size=medium (1.5 megapixels) keeps a 0.27-megapixel photo as it is")
        check_error(call(api, {"size": "huge"}, {"image_file": PHOTO}), 400, "invalid_parameter", "size=huge", "size")

        # type: the class with the largest share, and the type it belongs to
        r = call(s.url + "/v1/sessions", files={"image_file": PHOTO})
        top = next(c["name"] for c in r.json()["classes"] if c["index"] > 0)
        kind = next(t for t, cl in TYPES.items() if top in cl)
        r = call(api, {"size": "full", "type": kind}, {"image_file": PHOTO})
        same(r.content, rmbg(["--classes", ",".join(TYPES[kind])], "type.png"),
             f"type={kind} = rmbg --classes {','.join(TYPES[kind])}")
        expect(r.headers.get("X-Type") == kind, f"type={kind}: X-Type {r.headers.get('X-Type')}")
        r = call(api, {"size": "full"}, {"image_file": PHOTO})
        expect(r.headers.get("X-Type") == kind, f"type=auto: X-Type {r.headers.get('X-Type')}, the type of {top}, the "
                                                f"class with the largest share")
        r = call(api, {"size": "full", "type": "animal"}, {"image_file": PHOTO})
        same(r.content, rmbg(["--classes", "bird,cat,cow,dog,horse,sheep"], "animal.png"),
             "type=animal = rmbg --classes bird,cat,cow,dog,horse,sheep")
        check_error(call(api, {"type": "graphics"}, {"image_file": PHOTO}), 400, "unsupported_parameter", "type=graphics")
        check_error(call(api, {"type_level": "2"}, {"image_file": PHOTO}), 400, "unsupported_parameter", "type_level=2")
        expect(call(api, {"size": "full", "type_level": "1"}, {"image_file": PHOTO}).content == base, "type_level=1")

        # format, channels
        white_jpg = rmbg(["--bg-color", "ffffff"], "white.jpg")
        r = call(api, {"size": "full", "format": "jpg"}, {"image_file": PHOTO})
        same(r.content, white_jpg, "format=jpg (over white) = rmbg --bg-color ffffff -o x.jpg")
        expect(r.headers.get("Content-Type") == "image/jpeg", "format=jpg: image/jpeg")
        r = call(api, {"size": "full", "bg_color": "ffffff"}, {"image_file": PHOTO})
        same(r.content, white_jpg, "format=auto with an opaque bg_color: JPEG")
        mask = rmbg(["--format", "mask"], "mask.png")
        r = call(api, {"size": "full", "format": "zip"}, {"image_file": PHOTO})
        try:
            z = zipfile.ZipFile(io.BytesIO(r.content))
            names = sorted(z.namelist())
            color = np.array(Image.open(io.BytesIO(z.read("color.jpg"))))
            rgb = Image.fromarray(np.array(Image.open(io.BytesIO(base)))[..., :3])
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=90)
            ok = names == ["alpha.png", "color.jpg"] and z.read("alpha.png") == mask and \
                np.array_equal(color, np.array(Image.open(buf))) and z.testzip() is None
        except Exception as e:
            ok, names = False, str(e)
        expect(ok and r.headers.get("Content-Type") == "application/zip",
               f"format=zip: color.jpg (the colours, as Pillow encodes them at 90) and alpha.png (= rmbg --format "
               f"mask): {names}")
        check_error(call(api, {"format": "bmp"}, {"image_file": PHOTO}), 400, "invalid_parameter", "format=bmp")
        same(call(api, {"size": "full", "channels": "alpha"}, {"image_file": PHOTO}).content, mask,
             "channels=alpha = rmbg --format mask")
        same(call(api, {"size": "full", "channels": "overlay", "format": "png"}, {"image_file": PHOTO}).content,
             rmbg(["--format", "overlay"], "overlay.png"), "channels=overlay = rmbg --format overlay")
        same(call(api, {"size": "full", "channels": "labels"}, {"image_file": PHOTO}).content,
             rmbg(["--format", "labels"], "labels.png"), "channels=labels = rmbg --format labels")
        check_error(call(api, {"channels": "rgb"}, {"image_file": PHOTO}), 400, "invalid_parameter", "channels=rgb")

        # backgrounds
        same(call(api, {"size": "full", "bg_color": "ff000080"}, {"image_file": PHOTO}).content,
             rmbg(["--bg-color", "ff000080"], "bgc.png"), "bg_color=ff000080 = rmbg --bg-color ff000080")
        green = rmbg(["--bg-color", "008000"], "green.jpg")
        same(call(api, {"size": "full", "bg_color": "green"}, {"image_file": PHOTO}).content, green,
             "bg_color=green (a CSS name) = rmbg --bg-color 008000")
        same(rmbg(["--bg-color", "GREEN"], "green2.jpg"), green, "rmbg --bg-color GREEN = 008000")
        same(rmbg(["--bg-color", "#080"], "g3.jpg"), rmbg(["--bg-color", "008800"], "g4.jpg"), "rmbg --bg-color #080 = 008800")
        check_error(call(api, {"bg_color": "chartreuse2"}, {"image_file": PHOTO}), 400, "invalid_parameter",
                    "bg_color=chartreuse2", "bg_color")
        same(call(api, {"size": "full"}, {"image_file": PHOTO, "bg_image_file": bg}).content,
             rmbg(["--bg-image", bg], "bgi.jpg"), "bg_image_file = rmbg --bg-image (JPEG: opaque)")

        # crop, roi, scale, position, semitransparency, shadows
        same(call(api, {"size": "full", "crop": "true", "crop_margin": "10%"}, {"image_file": PHOTO}).content,
             rmbg(["--crop", "--crop-margin", "10%"], "crop10.png"), "crop=true crop_margin=10% = rmbg --crop --crop-margin 10%")
        same(call(api, {"size": "full", "crop": "true", "crop_margin": "7px", "classes": top, "refine": "none",
                        "threshold": "0.5"}, {"image_file": PHOTO}).content,
             rmbg(["--crop=7", "--classes", top, "--refine", "none", "--threshold", "0.5"], "crop7.png"),
             "crop=true crop_margin=7px = rmbg --crop=7")
        check_error(call(api, {"crop": "true", "crop_margin": "60%"}, {"image_file": PHOTO}), 400, "invalid_parameter",
                    "crop_margin=60% (remove.bg's limit is 50%)")
        same(call(api, {"size": "full", "roi": "10% 10% 70% 90%"}, {"image_file": PHOTO}).content,
             rmbg(["--roi", "10%,10%,70%,90%"], "roi.png"), "roi='10% 10% 70% 90%' = rmbg --roi")
        check_error(call(api, {"roi": "10 10 5 50"}, {"image_file": PHOTO}), 400, "invalid_parameter", "roi x1 < x0")
        same(call(api, {"size": "full", "scale": "50%", "position": "center", "largest": "true", "threshold": "0.5"},
                  {"image_file": PHOTO}).content,
             rmbg(["--scale", "50%", "--position", "center", "--largest", "--threshold", "0.5"], "scale.png"),
             "scale=50% position=center = rmbg --scale 50% --position center")
        same(call(api, {"size": "full", "position": "0% 100%", "threshold": "0.5", "largest": "true"},
                  {"image_file": PHOTO}).content,
             rmbg(["--position", "0%,100%", "--threshold", "0.5", "--largest"], "pos.png"),
             "position='0% 100%' = rmbg --position 0%,100%")
        check_error(call(api, {"scale": "5%"}, {"image_file": PHOTO}), 400, "invalid_parameter", "scale=5%")
        same(call(api, {"size": "full", "semitransparency": "false"}, {"image_file": PHOTO}).content,
             rmbg(["--threshold", "0.5"], "semi.png"), "semitransparency=false = rmbg --threshold 0.5")
        check_error(call(api, {"add_shadow": "true"}, {"image_file": PHOTO}), 400, "unsupported_parameter",
                    "add_shadow=true", "shadow")
        check_error(call(api, {"shadow_type": "drop"}, {"image_file": PHOTO}), 400, "unsupported_parameter", "shadow_type")
        same(call(api, {"size": "full", "add_shadow": "false"}, {"image_file": PHOTO}).content, base, "add_shadow=false")

        # deeplab's own fields, rmbg's options by the same names
        same(call(api, {"size": "full", "classes": "person,dog", "largest": "true", "refine": "none"},
                  {"image_file": PHOTO}).content,
             rmbg(["--classes", "person,dog", "--largest", "--refine", "none"], "largest.png"),
             "classes=person,dog largest=true refine=none = rmbg --classes person,dog --largest --refine none")
        same(call(api, [("size", "full"), ("keep_at", "20,30"), ("keep_at", "70,50"), ("threshold", "0.4")],
                  {"image_file": PHOTO}).content,
             rmbg(["--keep-at", "20,30", "--keep-at", "70,50", "--threshold", "0.4"], "keepat.png"),
             "keep_at twice, threshold = rmbg --keep-at --keep-at --threshold")
        same(call(api, {"size": "full", "refine_radius": "5", "refine_eps": "0.01", "decontaminate": "true"},
                  {"image_file": PHOTO}).content,
             rmbg(["--refine-radius", "5", "--refine-eps", "0.01", "--decontaminate"], "refine.png"),
             "refine_radius, refine_eps, decontaminate = rmbg's")
        hints = rmbg(["--keep-mask", os.path.join(T, "keep.png"), "--erase-mask", os.path.join(T, "erase.png")], "hints.png")
        same(call(api, {"size": "full"}, {"image_file": PHOTO, "keep_mask_file": os.path.join(T, "keep.png"),
                                          "erase_mask_file": os.path.join(T, "erase.png")}).content, hints,
             "keep_mask_file, erase_mask_file = rmbg --keep-mask --erase-mask")
        strokes = ["keep,6,10,10,50,40,80,20", "erase,9.5,70,50"]
        same(call(api, [("size", "full"), ("stroke", strokes[0]), ("stroke", strokes[1])], {"image_file": PHOTO}).content,
             rmbg(["--stroke", strokes[0], "--stroke", strokes[1]], "strokes.png"), "stroke twice = rmbg --stroke --stroke")
        same(call(api, {"size": "full", "format": "jpg", "jpeg_quality": "40"}, {"image_file": PHOTO}).content,
             rmbg(["--bg-color", "ffffff", "--jpeg-quality", "40"], "q40.jpg"), "jpeg_quality=40 = rmbg --jpeg-quality 40")
        for name, value in [("threshold", "2"), ("refine", "bilateral"), ("refine_radius", "0"), ("keep_at", "a,b"),
                            ("classes", "unicorn"), ("stroke", "paint,5,1,1"), ("largest", "maybe"), ("jpeg_quality", "0")]:
            check_error(call(api, {name: value}, {"image_file": PHOTO}), 400, "invalid_parameter", f"{name}={value}", name)

        # errors that are not a parameter's
        check_error(call(api, {"foo": "bar"}, {"image_file": PHOTO}), 400, "unknown_parameter", "an unknown parameter", "foo")
        check_error(call(api, {"size": "full"}), 400, "missing_source", "no image")
        check_error(call(api, {"image_file_b64": b64}, {"image_file": PHOTO}), 400, "multiple_sources", "two sources")
        check_error(call(api, {}, {"image_file": b"this is not an image"}), 400, "invalid_file_type", "a text file")
        check_error(call(api, {}, {"image_file": photo_bytes[:len(photo_bytes) // 2]}), 400, "invalid_file_type",
                    "a PNG cut in half")
        check_error(call(api, {"image_file_b64": "%%%"}), 400, "invalid_parameter", "image_file_b64 that is not base64")
        r = requests.post(api, data="hello", headers={"Content-Type": "text/plain"}, timeout=10)
        made += 1
        check_error(r, 415, "unsupported_media_type", "Content-Type: text/plain")
        r = requests.post(api, data='{"size": ', headers={"Content-Type": "application/json"}, timeout=10)
        made += 1
        check_error(r, 400, "invalid_parameter", "a malformed JSON body", "JSON")
        r = requests.get(api, timeout=10)
        made += 1
        check_error(r, 405, "method_not_allowed", "GET /v1.0/removebg")
        expect(r.headers.get("Allow") == "POST", f"405 says Allow: {r.headers.get('Allow')}")
        r = requests.get(s.url + "/nothing-here", timeout=10)
        made += 1
        check_error(r, 404, "not_found", "an unknown path")
        # unknown_foreground: a class whose mass is under 50% everywhere
        P = None
        for c in range(1, 21):
            m = rmbg(["--classes", str(c), "--refine", "none", "--format", "mask"], "cls.png")
            if m is not None and np.array(Image.open(io.BytesIO(m))).max() < 120:
                P = c
                break
        if P is None:
            expect(False, "no class of the test photo is under 50% everywhere (change the seed)")
        else:
            check_error(call(api, {"size": "full", "classes": str(P), "refine": "none"}, {"image_file": PHOTO}), 400,
                        "unknown_foreground", f"classes={P} (under 50% everywhere)")

        # rembg's server
        rem = s.url + "/api/remove"
        same(call(rem, files={"file": PHOTO}).content, base, "rembg: POST /api/remove file=@photo.png")
        same(call(rem, {"om": "true"}, {"file": PHOTO}).content, mask, "rembg: om=true = rmbg --format mask")
        same(call(rem, {"a": "false"}, {"file": PHOTO}).content, rmbg(["--refine", "none"], "none.png"),
             "rembg: a=false = rmbg --refine none")
        same(call(rem + "?bgc=255,0,0,255", {"model": "u2net"}, {"file": PHOTO}).content,
             rmbg(["--bg-color", "ff0000"], "red.png"), "rembg: model=u2net, bgc=255,0,0,255 in the query = rmbg --bg-color ff0000")
        for fields, what in [({"model": "isnet-general-use"}, "model=isnet-general-use"), ({"ppm": "true"}, "ppm=true"),
                             ({"af": "100"}, "af=100"), ({"size": "full"}, "size (not rembg's)")]:
            r = call(rem, fields, {"file": PHOTO})
            expect(r.status_code == 400 and "detail" in r.json(), f"rembg: {what}: 400 {r.text[:110]}")
        r = requests.get(rem, params={"url": furl + "/photo.png"}, timeout=30)
        made += 1
        same(r.content, base, "rembg: GET /api/remove?url=")

        # sessions
        r = call(s.url + "/v1/sessions", files={"image_file": PHOTO})
        sess = r.json() if r.status_code == 201 else {}
        sid = sess.get("id", "x")
        shares = [c["share"] for c in sess.get("classes", [])]
        expect(r.status_code == 201 and len(sid) == 32 and r.headers.get("X-Session-Id") == sid and
               (sess.get("width"), sess.get("height")) == (W, H) and shares == sorted(shares, reverse=True) and
               abs(sum(shares) - 1) < 1e-3, f"POST /v1/sessions: 201, id {sid}, {W}x{H}, classes by share")
        rend = f"{s.url}/v1/sessions/{sid}/render"
        body = {"classes": ["person", "dog", 7], "keep_at": [[40, 30]],
                "strokes": [{"mode": "keep", "radius": 6, "points": [[10, 10], [50, 40], [80, 20]]},
                            {"mode": "erase", "radius": 9.5, "points": [[70, 50]]}]}
        r = requests.post(rend, json=body, timeout=60)
        made += 1
        want_r = rmbg(["--classes", "person,dog,7", "--keep-at", "40,30", "--stroke", strokes[0], "--stroke", strokes[1]],
                      "render.png")
        same(r.content, want_r, "render (JSON: classes, keep_at, strokes) = rmbg with the same options")
        r2 = requests.post(rend, json=body, timeout=60)
        made += 1
        expect(r2.content == r.content, "the same render twice: the same bytes")
        r = requests.post(rend, json=dict(body, preview=48), timeout=60)
        made += 1
        expect(r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (48, 36),
               f"render preview=48: a 48x36 picture ({r.status_code})")
        r = requests.post(rend, json={"size": "full"}, timeout=60)
        made += 1
        check_error(r, 400, "unknown_parameter", "render: size (fixed when the session was made)")
        r = requests.get(f"{s.url}/v1/sessions/{sid}", timeout=10)
        made += 1
        expect(r.status_code == 200 and r.json().get("width") == W, "GET /v1/sessions/ID")
        r = requests.delete(f"{s.url}/v1/sessions/{sid}", timeout=10)
        made += 1
        expect(r.status_code == 204, f"DELETE /v1/sessions/ID: {r.status_code}")
        r = requests.post(rend, json=body, timeout=10)
        made += 1
        check_error(r, 410, "session_expired", "render after DELETE: 410")
        r = requests.post(f"{s.url}/v1/sessions/{'0' * 32}/render", json={}, timeout=10)
        made += 1
        check_error(r, 404, "session_not_found", "render of an id that never was: 404")

        # the operator's endpoints
        r = requests.get(s.url + "/healthz", timeout=10)
        made += 1
        expect(r.status_code == 200 and r.json() == {"status": "ok"}, "/healthz")
        r = requests.get(s.url + "/readyz", timeout=10)
        made += 1
        expect(r.status_code == 200, "/readyz: ready")
        r = requests.get(s.url + "/openapi.json", timeout=10)
        made += 1
        doc = r.json() if r.status_code == 200 else {}
        params = doc.get("paths", {}).get("/v1.0/removebg", {}).get("post", {}).get("requestBody", {}).get(
            "content", {}).get("multipart/form-data", {}).get("schema", {}).get("properties", {})
        expect(doc.get("openapi", "").startswith("3.") and len(params) > 25, f"/openapi.json: OpenAPI {doc.get('openapi')}, "
                                                                              f"{len(params)} removebg parameters")
        unknown = []
        for name in params:
            r = call(api, {name: "x"}, {"image_file": PHOTO} if name != "image_file" else None)
            if error_of(r).get("code") == "unknown_parameter":
                unknown.append(name)
        expect(not unknown, f"every parameter /openapi.json lists is one the server knows ({unknown or 'all'})")
        r = requests.get(s.url + "/", timeout=10)
        made += 1
        expect(r.status_code == 200 and "<canvas" in r.text and r.headers.get("Content-Type", "").startswith("text/html"),
               "GET /: the editor, from the binary")
        expect("Access-Control-Allow-Origin" not in requests.get(s.url + "/healthz", headers={"Origin": "https://x.test"},
                                                                 timeout=10).headers, "no CORS header without --cors")
        made += 1
        r = requests.get(s.url + "/metrics", timeout=10)
        made += 1
        m = r.text
        ok = r.status_code == 200 and 'deeplab_requests_total{route="removebg",status="200"}' in m and \
            'deeplab_requests_total{route="removebg",status="400"}' in m and "deeplab_queue_depth 0" in m and \
            'deeplab_request_seconds_bucket{route="removebg",le="+Inf"}' in m and "deeplab_batch_size_count" in m and \
            "process_resident_memory_bytes" in m and "deeplab_sessions " in m
        expect(ok, "/metrics: requests by route and status, latency histogram, batch sizes, queue, sessions, memory")
        requests.get(s.url + "/healthz?mark=end", timeout=10)
        made += 1
        time.sleep(0.3)
        lines = open(access).read().splitlines()[n_before:]
        first = next((i for i, l in enumerate(lines) if "mark=start" in l), -1)
        last = next((i for i, l in enumerate(lines) if "mark=end" in l), -1)
        expect(first >= 0 and last - first + 1 == made, f"the access log: one line per request ({last - first + 1} "
                                                         f"lines for {made} requests)")
        rc = s.stop()
        expect(rc == 0, f"SIGTERM: exit status {rc}")

    # API keys and CORS
    keys = os.path.join(T, "keys")
    open(keys, "w").write("first-key\n  second-key  \n\n")
    with serve_util.Server(["-w", ST, "--size", NET, "--api-key-file", keys, "--cors", "https://app.test",
                            "--access-log", "none"], name="serve_key") as s:
        api = s.url + "/v1.0/removebg"
        check_error(post(api, {"size": "full"}, {"image_file": PHOTO}), 403, "auth_failed", "no X-Api-Key")
        check_error(post(api, {"size": "full"}, {"image_file": PHOTO}, headers={"X-Api-Key": "first-kez"}), 403,
                    "auth_failed", "a wrong X-Api-Key")
        r1 = post(api, {"size": "full"}, {"image_file": PHOTO}, headers={"X-Api-Key": "first-key"})
        r2 = post(api, {"size": "full"}, {"image_file": PHOTO}, headers={"X-Api-Key": "second-key", "Origin": "https://app.test"})
        same(r1.content, base, "the first key of --api-key-file")
        same(r2.content, base, "the second key (blanks around it dropped)")
        expect(r2.headers.get("Access-Control-Allow-Origin") == "https://app.test",
               "--cors: Access-Control-Allow-Origin for its origin")
        r = post(api, {"size": "full"}, {"image_file": PHOTO}, headers={"X-Api-Key": "first-key", "Origin": "https://evil.test"})
        expect("Access-Control-Allow-Origin" not in r.headers, "--cors: none for another origin")
        r = requests.options(api, headers={"Origin": "https://app.test", "Access-Control-Request-Method": "POST"}, timeout=10)
        expect(r.status_code == 204 and "X-Api-Key" in r.headers.get("Access-Control-Allow-Headers", ""),
               f"a CORS preflight: 204, X-Api-Key allowed ({r.status_code})")
        expect(requests.get(s.url + "/healthz", timeout=10).status_code == 200, "/healthz needs no key")
        expect(requests.get(s.url + "/metrics", timeout=10).status_code == 403, "/metrics needs the key")
        expect(s.stop() == 0, "SIGTERM: exit 0")

    # limits: body, image size, queue (503), a client's share (429), the drain on SIGTERM
    slow = os.path.join(T, "slow.png")
    dlref.photo(2000, 1500, 7).save(slow)  # a large cut-out: long enough for a second request to meet it
    tiny_photo = os.path.join(T, "tiny.png")
    dlref.photo(24, 18, 4).save(tiny_photo)
    with serve_util.Server(["-w", ST, "--size", NET, "--max-body", "4096", "--access-log", "none"],
                           name="serve_limits") as s:
        api = s.url + "/v1.0/removebg"
        check_error(post(api, {}, {"image_file": PHOTO}), 413, "file_too_large", "a body over --max-body", "max-body")
        status, text = chunked_upload(s.port, "/v1.0/removebg", 8)
        expect(status == 0 and post(api, {}, {"image_file": tiny_photo}).status_code == 200,
               f"a chunked body over --max-body: the connection is closed ({status or 'no answer'}); the server goes on")
        expect(s.stop() == 0, "SIGTERM: exit 0")
    with serve_util.Server(["-w", ST, "--size", NET, "--max-pixels", "1000", "--access-log", "none"],
                           name="serve_pixels") as s:
        check_error(post(s.url + "/v1.0/removebg", {}, {"image_file": PHOTO}), 400, "resolution_too_high",
                    "an image over --max-pixels", "megapixels")
        expect(s.stop() == 0, "SIGTERM: exit 0")
    with serve_util.Server(["-w", ST, "--size", NET, "--queue", "1", "--drain-timeout", "300", "--access-log", "none"],
                           name="serve_busy") as s:
        api = s.url + "/v1.0/removebg"
        box = {}
        t = threading.Thread(target=lambda: box.update(r=post(api, {"size": "full"}, {"image_file": slow}, timeout=300)))
        t.start()
        wait_queued(s.url)
        r = post(api, {"size": "full"}, {"image_file": PHOTO})
        check_error(r, 503, "server_busy", "a request past --queue 1")
        expect(int(r.headers.get("Retry-After", "0")) >= 1, f"503 with Retry-After: {r.headers.get('Retry-After')}")
        s.proc.send_signal(signal.SIGTERM)  # while the slow one is at work
        t.join(300)
        r = box.get("r")
        expect(r is not None and r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (2000, 1500),
               "SIGTERM while a request is at work: it is answered in full")
        try:
            s.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        expect(s.proc.returncode == 0 and "draining" in s.log(), f"... and the server exits 0 ({s.proc.returncode})")
    with serve_util.Server(["-w", ST, "--size", NET, "--client-queue", "1", "--access-log", "none"], name="serve_share") as s:
        api = s.url + "/v1.0/removebg"
        t = threading.Thread(target=lambda: post(api, {"size": "full"}, {"image_file": slow}, timeout=300))
        t.start()
        wait_queued(s.url)
        r = post(api, {"size": "full"}, {"image_file": PHOTO})
        check_error(r, 429, "rate_limit_exceeded", "a second request of a client with --client-queue 1")
        expect(int(r.headers.get("Retry-After", "0")) >= 1, "429 with Retry-After")
        t.join(300)
        expect(s.stop() == 0, "SIGTERM: exit 0")

    # sessions out of memory (LRU) and out of time (TTL)
    small = os.path.join(T, "small.png")
    dlref.photo(40, 30, 2).save(small)
    with serve_util.Server(["-w", ST, "--size", NET, "--session-memory", "1", "--session-ttl", "2",
                            "--access-log", "none"], name="serve_sessions") as s:
        ids = [post(s.url + "/v1/sessions", files={"image_file": small}).json()["id"] for _ in range(14)]
        codes = [requests.post(f"{s.url}/v1/sessions/{i}/render", json={}, timeout=10).status_code for i in ids]
        expect(codes[0] == 410 and codes[-1] == 200 and set(codes) == {200, 410} and codes == sorted(codes, reverse=True),
               f"--session-memory 1 (MB, ~100 KB a session): the oldest are evicted and answer 410 ({codes})")
        time.sleep(3)
        r = requests.post(f"{s.url}/v1/sessions/{ids[-1]}/render", json={}, timeout=10)
        check_error(r, 410, "session_expired", "--session-ttl 2: unused for 3 s, 410")
        expect(s.stop() == 0, "SIGTERM: exit 0")

    files.shutdown()
    print(f"({rmbg_runs} rmbg runs to compare with)")
    return dlref.summary("serve API checks")


if __name__ == "__main__":
    sys.exit(main())
