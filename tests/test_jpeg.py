#!/usr/bin/env python3
"""test_jpeg.py - JPEG decoding of libdeeplab (engine/image_jpeg.c) against Pillow, through
build/tests/tool_image (decode = dl_image_read), and the JPEG limits through bin/deeplab.

Pillow 9.4 and libdeeplab both decode with Debian's libjpeg-turbo at its default settings, so the
pixels must be identical, not close:
  - baseline files of odd sizes (1x1 to 640x480), 4:4:4 / 4:2:2 / 4:2:0 chroma, several
    qualities, optimised Huffman tables, restart markers; gray; progressive; CMYK (Pillow writes
    Adobe-inverted CMYK, as Photoshop does)
  - EXIF orientations 1 to 8 against ImageOps.exif_transpose, little- and big-endian EXIF;
    orientation 6 also checked by hand (a 37x23 photo comes out 23x37, stored bottom-left on top)
  - a file cut anywhere, even just before its final EOI marker, is an error naming the
    truncation (65), as in Pillow; bytes after EOI are ignored
  - garbage after the JPEG signature, an image over the size limit, a progressive file over the
    scan limit (--max-jpeg-scans) are refused with 65; "-" reads standard input.
Exit 0 = pass, 1 = fail.
"""
import io
import os
import struct
import subprocess
import sys

import numpy as np
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", "build")
TOOL = os.path.join(BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD), "tests", "tool_image")
DEEPLAB = os.environ.get("DEEPLAB", os.path.join(ROOT, "bin", "deeplab"))
TMP = os.environ.get("TEST_TMP") or os.path.join(ROOT, BUILD, "test-tmp", "test_jpeg")
os.makedirs(TMP, exist_ok=True)
rng = np.random.default_rng(5)
failures = []


def expect(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def path(name):
    return os.path.join(TMP, name)


def photo(w, h):
    """Smooth gradients, a few discs and noise: something JPEG has to work on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 60 * np.sin((x + y) / 7)], -1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.4) * max(w, h)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def decode(file, limits=(), stdin=None):
    """Our decoder: (exit code, pixels or None, stderr)."""
    out = path("decoded.raw")
    p = subprocess.run([TOOL, *map(str, limits), "decode", file, out], capture_output=True, input=stdin)
    if p.returncode != 0:
        return p.returncode, None, p.stderr.decode()
    w, h, c = map(int, p.stdout.split())
    return 0, np.fromfile(out, np.uint8).reshape(h, w, c), ""


def same(name, file, want):
    """Our decode of file equals want (an RGB PIL image) exactly."""
    rc, got, err = decode(file)
    want = np.asarray(want.convert("RGB"))
    if rc != 0:
        expect(False, f"{name}: decode failed ({rc}): {err.strip()}")
        return
    if got.shape != want.shape:
        expect(False, f"{name}: shape {got.shape}, Pillow {want.shape}")
        return
    diff = np.abs(got.astype(int) - want).max()
    expect(diff == 0, f"{name}: {got.shape[1]}x{got.shape[0]} equal to Pillow (max |diff| {diff})")


def fails(name, file, code, text, limits=()):
    rc, _, err = decode(file, limits)
    expect(rc == code and text in err and err.count("\n") == 1,
           f"{name}: exit {rc} (want {code}), message contains '{text}': {err.strip()}")


def test_pillow_made():
    cases = [((1, 1), {}), ((17, 13), {}), ((97, 131), {"quality": 95}), ((640, 480), {"quality": 75}),
             ((33, 47), {"subsampling": 0}), ((33, 47), {"subsampling": 1}), ((33, 47), {"subsampling": 2}),
             ((101, 67), {"quality": 30, "optimize": True}), ((160, 120), {"restart_marker_blocks": 3}),
             ((97, 131), {"progressive": True}), ((300, 200), {"progressive": True, "quality": 90}),
             ((1, 1), {"progressive": True})]
    for (w, h), opts in cases:
        f = path(f"rgb_{w}x{h}_{'_'.join(f'{k}{v}' for k, v in opts.items())}.jpg")
        photo(w, h).save(f, **opts)
        same(f"RGB {opts}", f, Image.open(f))
    g = path("gray_61x43.jpg")
    photo(61, 43).convert("L").save(g, quality=85)
    same("gray", g, Image.open(g))
    gp = path("gray_progressive.jpg")
    photo(61, 43).convert("L").save(gp, progressive=True)
    same("gray progressive", gp, Image.open(gp))
    for (w, h) in [(45, 29), (8, 8)]:
        c = path(f"cmyk_{w}x{h}.jpg")
        cmyk = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK")
        cmyk.save(c, quality=90)
        expect(Image.open(c).mode == "CMYK", f"CMYK {w}x{h}: Pillow wrote a CMYK JPEG")
        same(f"CMYK {w}x{h}", c, Image.open(c))


def with_app1(jpeg, payload):
    """The JPEG with an APP1 segment inserted after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def exif_be(orientation):
    """A big-endian ("MM") EXIF block with IFD0 holding only the Orientation tag."""
    return (b"Exif\0\0MM\0\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) +
            struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))


def test_orientation():
    base = photo(37, 23)
    for o in range(1, 9):
        f = path(f"orient{o}.jpg")
        exif = Image.Exif()
        exif[0x0112] = o
        base.save(f, quality=92, exif=exif.tobytes())
        same(f"EXIF orientation {o} (little-endian)", f, ImageOps.exif_transpose(Image.open(f)))
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=92)
    plain = buf.getvalue()
    for o in (3, 6, 8):
        f = path(f"orient{o}_be.jpg")
        with open(f, "wb") as fh:
            fh.write(with_app1(plain, exif_be(o)))
        same(f"EXIF orientation {o} (big-endian)", f, ImageOps.exif_transpose(Image.open(f)))

    # orientation 6 by hand: stored 37x23, shown 23x37, the stored bottom-left pixel on top-left
    rc, got, _ = decode(path("orient6.jpg"))
    _, stored, _ = decode(path("orient1.jpg"))
    ok = rc == 0 and got.shape == (37, 23, 3) and np.array_equal(got, np.rot90(stored, -1))
    expect(ok, "EXIF orientation 6: 37x23 comes out 23x37, rotated 90 degrees clockwise")

    # EXIF that is cut short or nonsense is ignored: the pixels as stored
    for name, payload in [("cut IFD", exif_be(6)[:20]), ("orientation 9", exif_be(9)),
                          ("bad byte order", b"Exif\0\0XX\0\x2a" + bytes(20)), ("not EXIF", b"http://ns.adobe.com/")]:
        f = path("exif_bad.jpg")
        with open(f, "wb") as fh:
            fh.write(with_app1(plain, payload))
        same(f"EXIF {name}: ignored", f, Image.open(io.BytesIO(plain)))


def test_errors():
    buf = io.BytesIO()
    photo(97, 131).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    pbuf = io.BytesIO()
    photo(97, 131).save(pbuf, "JPEG", quality=90, progressive=True)
    prog = pbuf.getvalue()
    cuts = {"cut_header.jpg": data[:40], "cut_half.jpg": data[:len(data) // 2],
            "cut_end_of_scan.jpg": data[:-40], "cut_progressive.jpg": prog[:len(prog) * 2 // 3],
            "sig_only.jpg": data[:3]}
    for name, d in cuts.items():
        with open(path(name), "wb") as fh:
            fh.write(d)
        fails(name, path(name), 65, "truncated")
    with open(path("no_eoi.jpg"), "wb") as fh:
        fh.write(data[:-2])
    fails("JPEG without its final EOI marker (Pillow: truncated too)", path("no_eoi.jpg"), 65, "truncated")
    with open(path("full.jpg"), "wb") as fh:
        fh.write(data)
    with open(path("trailing.jpg"), "wb") as fh:
        fh.write(data + b"trailing bytes after EOI")
    same("JPEG with bytes after its EOI marker", path("trailing.jpg"), Image.open(path("full.jpg")))
    with open(path("garbage.jpg"), "wb") as fh:
        fh.write(b"\xff\xd8\xff" + bytes(rng.integers(0, 256, 500, dtype=np.uint8)))
    fails("garbage after the signature", path("garbage.jpg"), 65, "bad JPEG")
    fails("over the pixel limit", path("full.jpg"), 65, "more than the limit", limits=("--max-pixels", 1000))
    fails("over the side limit", path("full.jpg"), 65, "more than the limit", limits=("--max-side", 100))

    # stdin
    p = subprocess.run([TOOL, "decode", "-", path("stdin.raw")], input=data, capture_output=True)
    rc, want, _ = decode(path("full.jpg"))
    ok = p.returncode == 0 and np.array_equal(np.fromfile(path("stdin.raw"), np.uint8), want.reshape(-1))
    expect(ok, f"'-' reads a JPEG from standard input: exit {p.returncode} {p.stderr.decode().strip()}")
    p = subprocess.run([TOOL, "decode", "-", path("stdin.raw")], input=b"hello", capture_output=True)
    expect(p.returncode == 65 and b"stdin: not a PNG or JPEG file" in p.stderr,
           f"standard input that is no image: {p.stderr.decode().strip()}")

    # scan limit, through the command (the image is read before the weights)
    with open(path("prog.jpg"), "wb") as fh:
        fh.write(prog)
    nscans = prog.count(b"\xff\xda")
    missing = path("no-such-weights.safetensors")
    p = subprocess.run([DEEPLAB, "rmbg", "--max-jpeg-scans", "2", "-w", missing, "-o", path("x.png"), path("prog.jpg")],
                       capture_output=True, text=True)
    expect(p.returncode == 65 and "scans" in p.stderr,
           f"progressive JPEG of {nscans} scans, --max-jpeg-scans 2: exit {p.returncode}: {p.stderr.strip()}")
    p = subprocess.run([DEEPLAB, "rmbg", "--max-jpeg-scans", str(nscans), "-w", missing, "-o", path("x.png"),
                        path("prog.jpg")], capture_output=True, text=True)
    expect(p.returncode == 66 and "no-such-weights" in p.stderr,
           f"the same file with --max-jpeg-scans {nscans} is read (then the weights are missing): {p.stderr.strip()}")


def main():
    if not os.access(TOOL, os.X_OK):
        print(f"FAIL: {TOOL} not built (run make)")
        return 1
    test_pillow_made()
    test_orientation()
    test_errors()
    if failures:
        print(f"{len(failures)} check(s) FAILED")
        return 1
    print("all JPEG checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
