#!/usr/bin/env python3
"""test_serve_clients.py - `deeplab serve` with clients written by others: the npm package
`remove.bg` (remove.bg's own Node client) and a real browser, Debian's Chromium, driven by
playwright-core through the editor at /.

Both npm packages are installed, pinned, from the npm registry into BUILD/npm/ on the first run
(an ignored folder, kept between runs); nothing else is downloaded. The browser is /usr/bin/chromium
(Debian's, never one Playwright downloads), headless, sandbox off, a fresh profile.

  remove.bg    its endpoint constant replaced by the local server's: removeBackgroundFromImageBase64
               gets result_b64, which must be rmbg's cut-out byte for byte; removeBackgroundFromImageFile
               (multipart, crop=true) rmbg --crop's; a bad size comes back as remove.bg's errors
  the editor   opens a photo, drops the class of the first chip, paints one keep and one erase
               stroke, downloads the PNG. The download must be full size, opaque under the keep
               stroke and transparent under the erase stroke, different there from the cut-out
               without strokes, and equal byte for byte to rmbg --classes (the ones kept)
               --keep-mask --erase-mask with masks painted here in numpy from the strokes the
               editor sent (whose points must lie on the mouse's path); a screenshot is kept in
               BUILD/test-logs/serve_editor.png.
Exit 0 = pass, 1 = fail, 77 = skip (no serve, no node or chromium).
"""
import base64
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

import dlref
import serve_util

T = dlref.TMP
expect = dlref.expect
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ["playwright-core@1.65.1", "remove.bg@1.3.0"]


def npm_modules():
    """BUILD/npm/node_modules with PACKAGES, installed from the registry when missing."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(T)))
    prefix = os.path.join(build, "npm")
    stamp = os.path.join(prefix, "installed")
    if not os.path.exists(stamp) or open(stamp).read() != " ".join(PACKAGES):
        os.makedirs(prefix, exist_ok=True)
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", prefix] + PACKAGES,
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"npm install {' '.join(PACKAGES)}: {p.stderr.strip()[-500:]}")
        open(stamp, "w").write(" ".join(PACKAGES))
    return os.path.join(prefix, "node_modules")


def rmbg(st, args, name, photo):
    out = os.path.join(T, name)
    p = subprocess.run([dlref.DEEPLAB, "rmbg", "-w", st, "--size", "64"] + [str(a) for a in args] + ["-o", out, photo],
                       capture_output=True, text=True)
    if p.returncode != 0:
        expect(False, f"rmbg {' '.join(map(str, args))}: {p.stderr.strip()}")
        return None
    return open(out, "rb").read()


def paint(shape, strokes):
    """The hints the strokes paint (deeplab.h's dl_paint_strokes): a pixel whose centre is within the
    radius of a stroke's path gets its mode; later strokes win. In float64 from the float32 values
    the server keeps, in the C code's order of operations, so that the boundary pixels agree."""
    H, W = shape
    hints = np.zeros(shape, np.uint8)
    py, px = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    for s in strokes:
        pts = np.float32(s["points"]).astype(np.float64)
        r = np.float64(np.float32(s["radius"]))
        segs = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:]))
        for a, b in segs:
            dx, dy = b[0] - a[0], b[1] - a[1]
            len2 = dx * dx + dy * dy
            ux, uy = px - a[0], py - a[1]
            t = np.clip((ux * dx + uy * dy) / len2, 0, 1) if len2 > 0 else np.zeros_like(ux)
            ex, ey = ux - t * dx, uy - t * dy
            hints[ex * ex + ey * ey <= r * r] = 1 if s["mode"] == "keep" else 2
    return hints


def on_path(points, a, b, tol):
    """1 if every point lies within tol of the segment a-b."""
    a, b = np.float64(a), np.float64(b)
    d = b - a
    for p in np.float64(points):
        t = np.clip(np.dot(p - a, d) / np.dot(d, d), 0, 1)
        if np.linalg.norm(p - (a + t * d)) > tol:
            return False
    return True


def main():
    why = serve_util.serve_available()
    if why:
        print(f"SKIP: {why}")
        return 77
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not found (Node 20 and npm run these clients)")
            return 77
    if not os.path.exists("/usr/bin/chromium"):
        print("SKIP: /usr/bin/chromium not found (Debian's chromium; tools/install-deps.sh installs it)")
        return 77
    modules = npm_modules()
    st = serve_util.small_model()
    photo = os.path.join(T, "photo.png")
    dlref.photo(320, 240, 3).save(photo)
    with serve_util.Server(["-w", st, "--size", "64", "--access-log", os.path.join(T, "access.log")], name="serve") as s:
        # the remove.bg client
        out = os.path.join(T, "removebg.json")
        p = subprocess.run(["node", os.path.join(HERE, "serve_clients.js"), "removebg", modules, s.url, photo, out],
                           capture_output=True, text=True, timeout=120)
        res = json.load(open(out)) if p.returncode == 0 else {}
        expect(p.returncode == 0, f"node: the remove.bg client ran ({p.stderr.strip()[-300:]})")
        base = rmbg(st, [], "base.png", photo)
        got = base64.b64decode(res.get("base64", {}).get("b64", ""))
        expect(got == base, f"remove.bg's removeBackgroundFromImageBase64: result_b64 is rmbg's cut-out byte for byte "
                            f"({len(got)} bytes); detectedType {res.get('base64', {}).get('type')}, width "
                            f"{res.get('base64', {}).get('width')}")
        got = base64.b64decode(res.get("file", {}).get("b64", ""))
        expect(got == rmbg(st, ["--crop"], "crop.png", photo),
               "remove.bg's removeBackgroundFromImageFile (multipart, crop=true) = rmbg --crop")
        err = res.get("error")
        expect(isinstance(err, list) and err and err[0].get("title") and "size" in err[0].get("detail", ""),
               f"a bad size comes back as remove.bg's errors list: {err}")

        # the editor in Chromium
        p = subprocess.run(["node", os.path.join(HERE, "serve_clients.js"), "editor", modules, s.url, photo, T],
                           capture_output=True, text=True, timeout=300)
        expect(p.returncode == 0, f"node: Chromium drove the editor ({p.stderr.strip()[-600:]})")
        logs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(T))), "test-logs")
        if os.path.exists(os.path.join(T, "editor.png")):
            shutil.copy(os.path.join(T, "editor.png"), os.path.join(logs, "serve_editor.png"))
            print(f"screenshot: {os.path.join(logs, 'serve_editor.png')}")
        if p.returncode != 0:
            return dlref.summary("serve client checks")
        info = json.load(open(os.path.join(T, "editor.json")))
        expect(not info["errors"], f"no error in the page: {info['errors']}")
        dl = np.array(Image.open(os.path.join(T, "editor-download.png")))
        W, H = Image.open(photo).size
        expect(dl.shape == (H, W, 4) and info["name"].endswith("-cutout.png"),
               f"the download is the full-size RGBA cut-out ({dl.shape[1]}x{dl.shape[0]}, {info['name']})")
        body = info["download"] or {}
        strokes = body.get("strokes", [])
        expect("preview" not in body and [s_["mode"] for s_ in strokes] == ["keep", "erase"] and
               info["dropped"] not in body.get("classes", []) and info["renders"] >= 4,
               f"the download's render: full size, keep then erase stroke, class {info['dropped']} dropped "
               f"({info['renders']} renders in all)")
        paths_ok = len(strokes) == 2 and all(
            on_path(st_["points"], info[k]["from"], info[k]["to"], 1.5) and abs(st_["radius"] - info[k]["radius"]) < 1e-6 and
            np.linalg.norm(np.float64(st_["points"][0]) - info[k]["from"]) < 1.5 and
            np.linalg.norm(np.float64(st_["points"][-1]) - info[k]["to"]) < 1.5
            for st_, k in zip(strokes, ["keep", "erase"]))
        expect(paths_ok, "the strokes' points lie on the mouse's paths, in the photo's pixels, start to end")
        hints = paint((H, W), strokes)
        keep, erase = os.path.join(T, "keep.png"), os.path.join(T, "erase.png")
        Image.fromarray(np.where(hints == 1, 255, 0).astype(np.uint8)).save(keep)
        Image.fromarray(np.where(hints == 2, 255, 0).astype(np.uint8)).save(erase)
        classes = ",".join(str(c) for c in body.get("classes", []))
        want = rmbg(st, ["--classes", classes, "--keep-mask", keep, "--erase-mask", erase], "want.png", photo)
        expect(want == open(os.path.join(T, "editor-download.png"), "rb").read(),
               f"the download = rmbg --classes {classes} --keep-mask --erase-mask (the strokes painted in numpy), "
               f"byte for byte")
        plain = np.array(Image.open(io.BytesIO(rmbg(st, ["--classes", classes], "plain.png", photo))))
        a, a0 = dl[..., 3], plain[..., 3]
        k, e = hints == 1, hints == 2
        expect(k.sum() > 100 and e.sum() > 100 and (a[k] == 255).all() and (a[e] == 0).all(),
               f"opaque under the keep stroke ({k.sum()} pixels), transparent under the erase stroke ({e.sum()})")
        expect((a[k] != a0[k]).sum() > 20 and (a[e] != a0[e]).sum() > 20,
               f"the strokes changed the alpha: {(a[k] != a0[k]).sum()} pixels under keep, {(a[e] != a0[e]).sum()} "
               f"under erase")
        expect(s.stop() == 0, "SIGTERM: exit 0")
    return dlref.summary("serve client checks")


if __name__ == "__main__":
    sys.exit(main())
