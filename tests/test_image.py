#!/usr/bin/env python3
"""test_image.py - PNG decoding and encoding, Pillow-exact resize, torchvision preprocessing and
.npy output of libdeeplab, through build/tests/tool_image.

Every input is generated here (seeded) into $TEST_TMP: PNGs written by Pillow and, for what
Pillow cannot write (16-bit colour, 16-bit gray+alpha, Adam7, tRNS on every colour type, 1/2/4
bits), by the small PNG writer below. Each result is compared with an independent one: numpy for
decoding, Pillow 9.4 for resizing and reading back what we wrote, torchvision 0.14 for
preprocessing, numpy's np.save for .npy files. Exit 0 = pass, 77 = skip, 1 = fail.
"""
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib

try:
    import numpy as np
    from PIL import Image
    import torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms._presets import SemanticSegmentation
except ImportError as e:  # the suite runs with Debian's python3, which has them
    print(f"SKIP: {e}")
    sys.exit(77)

warnings.filterwarnings("ignore", message="Palette images with Transparency")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", "build")
TOOL = os.path.join(BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD), "tests", "tool_image")
TMP = os.environ.get("TEST_TMP") or os.path.join(ROOT, BUILD, "test-tmp", "test_image")
os.makedirs(TMP, exist_ok=True)
rng = np.random.default_rng(20240611)
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def path(name):
    return os.path.join(TMP, name)


def tool(*args, limits=(), preexec=None, stdin=None):
    """Runs tool_image; returns (exit code, stdout, stderr)."""
    cmd = [TOOL, *map(str, limits), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, input=stdin, preexec_fn=preexec)
    return p.returncode, p.stdout, p.stderr


def compare_u8(name, got, want):
    """Exact comparison of two uint8 arrays; prints the count of differing bytes and the worst."""
    if got.shape != want.shape:
        fail(f"{name}: shape {got.shape}, expected {want.shape}")
        return False
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    if diff.any():
        worst = np.unravel_index(np.argmax(diff), diff.shape)
        fail(f"{name}: {np.count_nonzero(diff)} of {diff.size} bytes differ, worst {diff.max()} "
             f"at {tuple(int(i) for i in worst)} (got {got[worst]}, expected {want[worst]})")
        return False
    return True


# ---------------------------------------------------------------- a minimal PNG writer

SIG = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(tag, data, crc=None):
    if crc is None:
        crc = zlib.crc32(tag + data)
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc & 0xFFFFFFFF)


def pack_row(samples, depth):
    """One scanline of samples (1-D ints) at the given bit depth, most significant bits first."""
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    if depth == 16:
        return samples.astype(">u2").tobytes()
    per = 8 // depth
    s = np.zeros(-(-len(samples) // per) * per, np.uint8)
    s[: len(samples)] = samples
    s = s.reshape(-1, per)
    shifts = np.array([8 - depth * (k + 1) for k in range(per)], np.uint8)
    return (s << shifts).sum(axis=1).astype(np.uint8).tobytes()


def scanlines(img, depth):
    h, w, c = img.shape
    return b"".join(b"\x00" + pack_row(img[y].reshape(w * c), depth) for y in range(h))


def make_png(img, color_type, depth, palette=None, trns=None, interlace=False, idat_split=997,
             ihdr_size=None):
    """img: h x w x channels samples. Returns the PNG bytes (several IDAT chunks)."""
    h, w, c = img.shape
    assert c == CHANNELS[color_type]
    if interlace:
        raw = b"".join(scanlines(img[y0::dy, x0::dx], depth)
                       for x0, y0, dx, dy in ADAM7 if img[y0::dy, x0::dx].size)
    else:
        raw = scanlines(img, depth)
    W, H = ihdr_size or (w, h)
    out = SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        out += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += chunk(b"tRNS", trns)
    z = zlib.compress(raw, 6)
    for i in range(0, len(z), idat_split):
        out += chunk(b"IDAT", z[i : i + idat_split])
    return out + chunk(b"IEND", b"")


def expected_rgb(img, color_type, depth, palette=None):
    """The RGB8 our decoder must produce, computed from the samples."""
    if color_type == 3:
        return np.asarray(palette, np.uint8)[img[..., 0]]
    if depth == 16:
        v = img >> 8  # high byte
    elif depth < 8:
        v = img * (255 // (2**depth - 1))  # 1 -> x255, 2 -> x85, 4 -> x17
    else:
        v = img
    v = v.astype(np.uint8)
    if color_type in (0, 4):
        return np.repeat(v[..., :1], 3, axis=2)
    return v[..., :3]


def decode(file, limits=()):
    out = file + ".raw"
    rc, so, se = tool("decode", file, out, limits=limits)
    if rc != 0:
        return rc, se, None
    w, h, c = map(int, so.split())
    return rc, se, np.fromfile(out, np.uint8).reshape(h, w, c)


# ---------------------------------------------------------------- decoding


def test_decode_self_made():
    cases = []
    for w, h in [(1, 1), (3, 2), (13, 7), (33, 47)]:
        for interlace in (False, True):
            for ct, depths in [(0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))]:
                for d in depths:
                    cases.append((w, h, ct, d, interlace, False))
                    if ct in (0, 2, 3):
                        cases.append((w, h, ct, d, interlace, True))  # with tRNS
    n_ok = 0
    for w, h, ct, d, interlace, with_trns in cases:
        palette = trns = None
        if ct == 3:
            ncol = min(256, 2**d)
            palette = rng.integers(0, 256, (ncol, 3))
            img = rng.integers(0, ncol, (h, w, 1))
            if with_trns:
                trns = rng.integers(0, 256, max(1, ncol // 2), dtype=np.uint8).tobytes()
        else:
            img = rng.integers(0, 2**d, (h, w, CHANNELS[ct]))
            if with_trns:
                trns = struct.pack(">" + "H" * CHANNELS[ct], *img[0, 0])  # the first pixel's colour
        name = f"ct{ct}_d{d}_{w}x{h}{'_adam7' if interlace else ''}{'_trns' if with_trns else ''}.png"
        f = path(name)
        with open(f, "wb") as fh:
            fh.write(make_png(img, ct, d, palette, trns, interlace))
        want = expected_rgb(img, ct, d, palette)
        # Check the test's own writer and expectation against Pillow, which reads all of these
        # (16-bit gray excepted: Pillow clips I;16 to 0..255 in convert("RGB") instead of
        # keeping the high byte).
        if not (ct == 0 and d == 16):
            pil = np.asarray(Image.open(f).convert("RGB"))
            compare_u8(f"Pillow reading the test's {name} (a bug in the test)", pil, want)
        rc, se, got = decode(f)
        if rc != 0:
            fail(f"decode {name}: exit {rc}: {se.strip()}")
        elif compare_u8(f"decode {name}", got, want):
            n_ok += 1
    print(f"decode, test-made PNGs: {n_ok}/{len(cases)} exact")


def test_decode_pillow_made():
    cases = []
    for w, h in [(1, 1), (7, 5), (97, 131), (640, 480)]:
        bits = rng.integers(0, 2, (h, w), dtype=np.uint8)
        cases.append(("1", Image.fromarray(bits * 255).convert("1"), np.repeat((bits * 255)[..., None], 3, 2), {}))
        g = rng.integers(0, 256, (h, w), dtype=np.uint8)
        cases.append(("L", Image.fromarray(g), np.repeat(g[..., None], 3, 2), {}))
        la = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        cases.append(("LA", Image.fromarray(la, "LA"), np.repeat(la[..., :1], 3, 2), {}))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cases.append(("RGB", Image.fromarray(rgb), rgb, {}))
        cases.append(("RGB-opt", Image.fromarray(rgb), rgb, {"optimize": True}))
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        cases.append(("RGBA", Image.fromarray(rgba), rgba[..., :3], {}))
        g16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        cases.append(("I;16", Image.fromarray(g16), np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, 2), {}))
        for ncol, kw in [(256, {}), (16, {"bits": 4}), (5, {"transparency": 2})]:
            pal = rng.integers(0, 256, (ncol, 3), dtype=np.uint8)
            idx = rng.integers(0, ncol, (h, w), dtype=np.uint8)
            p = Image.fromarray(idx, "P")
            p.putpalette(pal.ravel().tolist())
            cases.append((f"P{ncol}", p, pal[idx], kw))
    n_ok = 0
    for mode, im, want, kw in cases:
        name = f"pil_{mode}_{im.width}x{im.height}.png"
        f = path(name)
        im.save(f, **kw)
        rc, se, got = decode(f)
        if rc != 0:
            fail(f"decode {name}: exit {rc}: {se.strip()}")
        elif compare_u8(f"decode {name}", got, want):
            n_ok += 1
    print(f"decode, Pillow-made PNGs: {n_ok}/{len(cases)} exact")


def test_decode_tolerated():
    """Damage outside the image data that must not stop decoding."""
    img = rng.integers(0, 256, (20, 30, 3))
    good = make_png(img, 2, 8)
    want = expected_rgb(img, 2, 8)
    iend = good.rindex(b"IEND") - 4
    text_bad_crc = chunk(b"tEXt", b"Comment\x00hello", crc=12345)
    ztxt_bomb = chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (64 << 20), 9))
    cases = {
        "no_iend": good[:iend],
        "junk_after_iend": good + b"junk" * 100,
        "text_bad_crc": good[:33] + text_bad_crc + good[33:],
        "ztxt_64mb": good[:33] + ztxt_bomb + good[33:],
    }
    for name, data in cases.items():
        f = path(f"tolerated_{name}.png")
        with open(f, "wb") as fh:
            fh.write(data)
        t0 = time.time()
        rc, se, got = decode(f)
        dt = time.time() - t0
        if rc != 0:
            fail(f"decode {name}: exit {rc}: {se.strip()}")
        else:
            compare_u8(f"decode {name}", got, want)
        if dt > 2:
            fail(f"decode {name}: took {dt:.1f} s")
    print(f"decode, tolerated damage: {len(cases)} cases")


def test_decode_errors():
    img = rng.integers(0, 256, (48, 64, 3))
    good = make_png(img, 2, 8, idat_split=1 << 20)
    i = good.index(b"IDAT")
    n = struct.unpack(">I", good[i - 4 : i])[0]
    data = good[i + 4 : i + 4 + n]

    def with_idat(z):
        return good[: i - 4] + chunk(b"IDAT", z) + good[i + 8 + n :]

    bad_stream = bytearray(data)
    for k in range(2, 40):
        bad_stream[k] ^= 0xA5
    zeros_1bit = zlib.compress(b"\x00" * (12000 * 1501), 9)  # 12000 rows of 1 filter + 1500 bytes

    def huge(w, h, depth, ct, z=b""):
        return (SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, 0)) +
                (chunk(b"IDAT", z) if z else b"") + chunk(b"IEND", b""))

    os.makedirs(path("a_directory.png"), exist_ok=True)
    files = {
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "sig_only.png": SIG,
        "half_sig.png": SIG[:5],
        "cut_mid_idat.png": good[: i + 4 + n // 2],
        "bad_crc.png": good[: i + 4 + n] + bytes([good[i + 4 + n] ^ 0xFF]) + good[i + 5 + n :],
        "bad_zlib_header.png": with_idat(b"\x00\x00" + data[2:]),
        "bad_zlib_stream.png": with_idat(bytes(bad_stream)),
        "zero_width.png": huge(0, 10, 8, 0),
        "bad_color_type.png": huge(10, 10, 8, 5),
        "header_100000x100000.png": huge(100000, 100000, 8, 2),
        "bomb_12000x12000.png": huge(12000, 12000, 1, 0, zeros_1bit),
        "wide_70000x1.png": huge(70000, 1, 8, 0, zlib.compress(b"\x00" * 70001)),
    }
    for name, data in files.items():
        with open(path(name), "wb") as fh:
            fh.write(data)
    # name -> (exit code, text the message must contain, limits)
    expect = {
        "empty.png": (65, "empty file"),
        "text.png": (65, "not a PNG or JPEG file"),
        "sig_only.png": (65, "bad PNG: file truncated"),
        "half_sig.png": (65, "bad PNG"),
        "cut_mid_idat.png": (65, "bad PNG: file truncated"),
        "bad_crc.png": (65, "bad PNG: IDAT: CRC error"),
        "bad_zlib_header.png": (65, "bad PNG: IDAT:"),
        "bad_zlib_stream.png": (65, "bad PNG: IDAT:"),
        "zero_width.png": (65, "bad PNG:"),
        "bad_color_type.png": (65, "bad PNG:"),
        "header_100000x100000.png": (65, "image is 100000x100000, more than the limit of 100 megapixels"),
        "bomb_12000x12000.png": (65, "image is 12000x12000, more than the limit of 100 megapixels"),
        "wide_70000x1.png": (65, "image is 70000x1, more than the limit of 65535 pixels per side"),
        "a_directory.png": (66, "is a directory, expected a file"),
        "missing.png": (66, "cannot open: No such file or directory"),
    }
    for name, (code, text) in expect.items():
        f = path(name)
        t0 = time.time()
        rc, se, _ = decode(f)
        dt = time.time() - t0
        lines = se.splitlines()
        prefix = f"deeplab: {f}: "
        if rc != code or len(lines) != 1 or not lines[0].startswith(prefix) or text not in lines[0]:
            fail(f"decode {name}: exit {rc} (expected {code}), stderr {se!r} (expected one line "
                 f"starting {prefix!r} containing {text!r})")
        else:
            print(f"  {name:28s} exit {rc}: {lines[0][len(prefix):]}")
        if dt > 1.0:
            fail(f"decode {name}: took {dt:.2f} s, expected to fail fast")
        if os.path.exists(f + ".raw"):
            fail(f"decode {name}: left an output")

    # Limits set at run time: a 100x100 image against 9999 and 10000 pixels, 99 and 100 per side.
    f = path("limit_100x100.png")
    Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(f)
    for limits, code, text in [(("--max-pixels", 9999), 65, "more than the limit of 0.009999 megapixels"),
                               (("--max-pixels", 10000), 0, ""),
                               (("--max-side", 99), 65, "more than the limit of 99 pixels per side"),
                               (("--max-side", 100), 0, "")]:
        rc, se, _ = decode(f, limits=limits)
        if rc != code or text not in se or (code and len(se.splitlines()) != 1):
            fail(f"decode with {limits}: exit {rc} (expected {code}), stderr {se!r}")
    print(f"decode errors: {len(expect)} cases + 4 limit cases checked")


# ---------------------------------------------------------------- resize


def smooth_image(w, h, c):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [127.5 + 127.5 * np.sin(x / (3 + k) + y / (5 + 2 * k) + k) for k in range(c)]
    return np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)


def test_resize():
    pairs = [
        ((1, 1), (1, 1)), ((1, 1), (5, 3)), ((2, 3), (1, 1)), ((2, 3), (7, 4)), ((2, 3), (2, 7)),
        ((33, 47), (20, 30)), ((33, 47), (520, 720)), ((33, 47), (33, 20)), ((33, 47), (10, 47)),
        ((97, 131), (520, 702)), ((97, 131), (31, 17)), ((97, 131), (96, 130)),
        ((640, 480), (693, 520)), ((640, 480), (213, 160)), ((640, 480), (640, 240)),
        ((640, 480), (1, 1)), ((1000, 333), (1561, 520)), ((1000, 333), (100, 33)),
        ((1000, 333), (999, 334)), ((520, 520), (520, 520)), ((520, 520), (519, 521)),
        ((7, 1000), (3, 1)), ((1, 600), (1, 7)),
    ]
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    n = 0
    worst_total = 0
    for (w, h), (ow, oh) in pairs:
        for c, mode in modes.items():
            for kind in ("random", "smooth"):
                if kind == "random":
                    a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
                    if c == 4:  # make sure fully transparent and opaque pixels occur
                        a[..., 3][rng.random((h, w)) < 0.2] = 0
                        a[..., 3][rng.random((h, w)) < 0.2] = 255
                else:
                    a = smooth_image(w, h, c)
                src = path("resize_src.raw")
                dst = path("resize_dst.raw")
                a.tofile(src)
                rc, _, se = tool("resize", src, w, h, c, ow, oh, dst)
                name = f"resize {mode} {kind} {w}x{h} -> {ow}x{oh}"
                if rc != 0:
                    fail(f"{name}: exit {rc}: {se.strip()}")
                    continue
                got = np.fromfile(dst, np.uint8).reshape(oh, ow, c)
                im = Image.fromarray(a[..., 0] if c == 1 else a, mode)
                want = np.asarray(im.resize((ow, oh), Image.BILINEAR)).reshape(oh, ow, c)
                if compare_u8(name, got, want):
                    n += 1
                worst_total = max(worst_total, int(np.abs(got.astype(int) - want.astype(int)).max()))
    print(f"resize vs Pillow {Image.__version__}: {n}/{len(pairs) * 6} exact, worst difference {worst_total}")


# ---------------------------------------------------------------- input size and preprocess


def test_input_size():
    triples = [(w, h, s) for w, h in [(1, 1), (1, 2), (2, 1), (520, 520), (521, 520), (520, 521), (640, 480),
                                      (480, 640), (333, 1000), (1000, 333), (4000, 3000), (3000, 4000),
                                      (65535, 1), (1, 65535), (7, 3), (3, 7)]
               for s in (0, 1, 224, 513, 520, 1024)]
    triples += [(int(rng.integers(1, 6000)), int(rng.integers(1, 6000)), int(rng.choice([520, 513, 321, 1000])))
                for _ in range(2000)]
    stdin = "".join(f"{w} {h} {s}\n" for w, h, s in triples)
    rc, so, se = tool("input-size", stdin=stdin)
    if rc != 0:
        fail(f"input-size: exit {rc}: {se}")
        return
    got = [tuple(map(int, line.split())) for line in so.splitlines()]
    bad = 0
    for (w, h, s), g in zip(triples, got):
        if s == 0:
            want = (w, h)  # SemanticSegmentation(resize_size=None): no resize
        else:
            nh, nw = TF._compute_resized_output_size((h, w), [s])
            want = (nw, nh)
        if g != want:
            bad += 1
            if bad <= 5:
                fail(f"input size of {w}x{h} for {s}: got {g[0]}x{g[1]}, torchvision {want[0]}x{want[1]}")
    if len(got) != len(triples):
        fail(f"input-size: {len(got)} answers for {len(triples)} questions")
    # and the helper above is what F.resize uses: check on real images
    for w, h in [(7, 3), (97, 131), (1000, 333)]:
        im = Image.new("RGB", (w, h))
        nh, nw = TF._compute_resized_output_size((h, w), [520])
        if TF.resize(im, [520]).size != (nw, nh):
            fail(f"torchvision's F.resize of {w}x{h} is not {nw}x{nh}: the reference is wrong")
    print(f"input size vs torchvision: {len(triples) - bad}/{len(triples)} equal")


def read_npy(f):
    return np.load(f)


def test_preprocess():
    images = {
        "random_97x131": Image.fromarray(rng.integers(0, 256, (131, 97, 3), dtype=np.uint8)),
        "smooth_640x480": Image.fromarray(smooth_image(640, 480, 3)),
        "random_1000x333": Image.fromarray(rng.integers(0, 256, (333, 1000, 3), dtype=np.uint8)),
        "smooth_333x1000": Image.fromarray(smooth_image(333, 1000, 3)),
        "random_520x520": Image.fromarray(rng.integers(0, 256, (520, 520, 3), dtype=np.uint8)),
        "random_600x520": Image.fromarray(rng.integers(0, 256, (520, 600, 3), dtype=np.uint8)),
        "random_17x9": Image.fromarray(rng.integers(0, 256, (9, 17, 3), dtype=np.uint8)),
        "gray_45x60": Image.fromarray(rng.integers(0, 256, (60, 45), dtype=np.uint8)),
    }
    n = total = 0
    for name, im in images.items():
        f = path(f"pre_{name}.png")
        im.save(f)
        for size in (520, 0):
            total += 1
            out = path(f"pre_{name}_{size}.npy")
            rc, _, se = tool("preprocess", f, size, out)
            if rc != 0:
                fail(f"preprocess {name} {size}: exit {rc}: {se.strip()}")
                continue
            got = read_npy(out)
            ref = SemanticSegmentation(resize_size=size or None)(Image.open(f).convert("RGB"))
            want = ref.unsqueeze(0).numpy()
            if got.dtype != np.float32 or got.shape != want.shape:
                fail(f"preprocess {name} {size}: {got.dtype} {got.shape}, torchvision {want.dtype} {want.shape}")
                continue
            differ = got.view(np.uint32) != want.view(np.uint32)
            if differ.any():
                d = np.abs(got.astype(np.float64) - want)
                fail(f"preprocess {name} size {size}: {np.count_nonzero(differ)} of {got.size} floats differ, "
                     f"worst {d.max():.3g}")
            else:
                n += 1
    print(f"preprocess vs torchvision SemanticSegmentation: {n}/{total} bitwise equal")


# ---------------------------------------------------------------- writing


def test_write():
    n = 0
    for w, h in [(1, 1), (37, 19), (200, 150)]:
        for c, mode in [(1, "L"), (3, "RGB"), (4, "RGBA")]:
            a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            src = path("w.raw")
            a.tofile(src)
            f = path(f"written_{mode}_{w}x{h}.png")
            rc, _, se = tool("write", src, w, h, c, f)
            if rc != 0:
                fail(f"write {mode} {w}x{h}: exit {rc}: {se.strip()}")
                continue
            im = Image.open(f)
            if im.mode != mode:
                fail(f"write {mode} {w}x{h}: Pillow reads mode {im.mode}")
                continue
            ok = compare_u8(f"write {mode} {w}x{h}, read by Pillow", np.asarray(im).reshape(h, w, c), a)
            rc, se, got = decode(f)
            want = np.repeat(a, 3, axis=2) if c == 1 else a[..., :3]
            ok = ok and rc == 0 and compare_u8(f"write {mode} {w}x{h}, read by us", got, want)
            n += ok
    for ncol in (1, 2, 21, 256):
        w, h = 45, 31
        pal = rng.integers(0, 256, (ncol, 3), dtype=np.uint8)
        idx = rng.integers(0, ncol, (h, w), dtype=np.uint8)
        idx.tofile(path("idx.raw"))
        pal.tofile(path("pal.raw"))
        f = path(f"indexed_{ncol}.png")
        rc, _, se = tool("write-indexed", path("idx.raw"), w, h, path("pal.raw"), ncol, f)
        if rc != 0:
            fail(f"write-indexed {ncol}: exit {rc}: {se.strip()}")
            continue
        im = Image.open(f)
        ok = im.mode == "P" and compare_u8(f"indexed {ncol}: indices", np.asarray(im), idx)
        ok = ok and compare_u8(f"indexed {ncol}: palette", np.array(im.getpalette()[: 3 * ncol], np.uint8).reshape(-1, 3), pal)
        rc, se, got = decode(f)
        ok = ok and rc == 0 and compare_u8(f"indexed {ncol}, read by us", got, pal[idx])
        n += bool(ok)
    print(f"write: {n}/13 round trips exact")

    # An index past the palette: refused, and the existing file is left as it was.
    f = path("indexed_21.png")
    before = open(f, "rb").read()
    idx = np.full((31, 45), 21, np.uint8)
    idx.tofile(path("idx.raw"))
    rng.integers(0, 256, (21, 3), dtype=np.uint8).tofile(path("pal.raw"))
    rc2, _, se2 = tool("write-indexed", path("idx.raw"), 45, 31, path("pal.raw"), 21, f)
    if rc2 != 64 or "past the 21 palette entries" not in se2 or open(f, "rb").read() != before:
        fail(f"write-indexed with index 21 of 21 colours: exit {rc2}, {se2!r}, file changed: "
             f"{open(f, 'rb').read() != before}")

    # Into a folder that does not exist: 73, and nothing created.
    missing = path("no/such/folder/out.png")
    rc, _, se = tool("write", path("w.raw"), 200, 150, 4, missing)
    if rc != 73 or len(se.splitlines()) != 1 or os.path.exists(path("no")):
        fail(f"write into a missing folder: exit {rc} (expected 73), stderr {se!r}")

    # A write error (file size limit, EFBIG): 74, no output and no temporary file left.
    big = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    big.tofile(path("big.raw"))
    os.makedirs(path("fsize"), exist_ok=True)
    target = path("fsize/out.png")

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))

    rc, _, se = tool("write", path("big.raw"), 800, 600, 3, target, preexec=small_files)
    left = os.listdir(path("fsize"))
    if rc != 74 or len(se.splitlines()) != 1 or "write error" not in se or left:
        fail(f"write past RLIMIT_FSIZE: exit {rc} (expected 74), stderr {se!r}, left {left}")
    else:
        print(f"  write error: exit {rc}: {se.strip()}")

    # /dev/full: not writable for a normal user, so 73; as root dl_outfile would create
    # /dev/.full.tmp-* and rename it over the device node, so the case is left out.
    if os.geteuid() != 0:
        rc, _, se = tool("write", path("w.raw"), 200, 150, 4, "/dev/full")
        left = [e for e in os.listdir("/dev") if e.startswith(".full.tmp")]
        if rc not in (73, 74) or left:
            fail(f"write to /dev/full: exit {rc}, stderr {se!r}, left {left}")
    else:
        print("  /dev/full case not run as root (it would replace the device node)")

    # Speed: a 4000x3000 RGBA photo-like image.
    y, x = np.mgrid[0:3000, 0:4000]
    photo = np.stack([(x * 255 // 4000), (y * 255 // 3000), ((x + y) % 256), np.full_like(x, 255)], 2)
    photo = np.clip(photo + rng.integers(-8, 9, photo.shape), 0, 255).astype(np.uint8)
    photo.tofile(path("photo.raw"))
    t0 = time.time()
    rc, _, se = tool("write", path("photo.raw"), 4000, 3000, 4, path("photo.png"))
    dt = time.time() - t0
    print(f"  4000x3000 RGBA encode: {dt:.2f} s, {os.path.getsize(path('photo.png')) / 1e6:.1f} MB")
    if rc != 0 or dt > 10:
        fail(f"4000x3000 RGBA encode: exit {rc}, {dt:.1f} s")


def test_npy():
    n = 0
    for shape in [(1, 3, 5, 7), (3,), (), (0,), (2, 0, 3), (4, 1), (1, 3, 520, 693)]:
        a = rng.standard_normal(shape).astype(np.float32)
        if a.size >= 3:
            a.flat[:3] = [np.nan, -np.inf, -0.0]
        a.tofile(path("npy.f32"))
        out = path("out.npy")
        rc, _, se = tool("npy", path("npy.f32"), out, *shape)
        if rc != 0:
            fail(f"npy {shape}: exit {rc}: {se.strip()}")
            continue
        data = open(out, "rb").read()
        np.save(path("ref.npy"), a)
        ref = open(path("ref.npy"), "rb").read()
        hlen = struct.unpack("<H", data[8:10])[0]
        if (10 + hlen) % 64 or data[9 + hlen : 10 + hlen] != b"\n":
            fail(f"npy {shape}: data starts at {10 + hlen}, not a multiple of 64 after a newline")
        elif data != ref:
            fail(f"npy {shape}: differs from np.save: {data[:10 + hlen]!r} vs {ref[:140]!r}")
        else:
            b = np.load(out)
            if b.shape == shape and b.dtype == np.float32 and b.tobytes() == a.tobytes():
                n += 1
            else:
                fail(f"npy {shape}: np.load gives {b.dtype} {b.shape}")
    np.zeros(3, np.float32).tofile(path("npy.f32"))
    rc, _, se = tool("npy", path("npy.f32"), path("nofolder/x.npy"), 3)
    if rc != 73:
        fail(f"npy into a missing folder: exit {rc}: {se}")
    print(f"npy: {n}/7 byte-identical to np.save")


def test_valgrind():
    """Opt-in (DL_VALGRIND=1, about 20 s): no leak or memory error on good and bad files."""
    if os.environ.get("DL_VALGRIND") != "1":
        print("valgrind: not run (set DL_VALGRIND=1)")
        return
    vg = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=all", "--errors-for-leak-kinds=all",
          "--error-exitcode=99"]
    runs = [["decode", path(f), path("vg.raw")] for f in [
        "ct2_d16_33x47_adam7_trns.png", "ct3_d4_33x47_adam7_trns.png", "pil_RGBA_97x131.png",
        "tolerated_ztxt_64mb.png", "empty.png", "text.png", "cut_mid_idat.png", "bad_crc.png",
        "bad_zlib_stream.png", "zero_width.png", "header_100000x100000.png", "bomb_12000x12000.png",
        "a_directory.png", "missing.png"]]
    runs += [["resize", path("resize_src.raw"), 1, 600, 4, 1, 7, path("vg.raw")],
             ["write", path("w.raw"), 200, 150, 4, path("vg.png")],
             ["write", path("w.raw"), 200, 150, 4, path("no/such/folder/vg.png")],
             ["write-indexed", path("idx.raw"), 45, 31, path("pal.raw"), 21, path("vg.png")],
             ["preprocess", path("pre_random_97x131.png"), 520, path("vg.npy")]]
    for r in runs:
        p = subprocess.run(vg + [TOOL, *map(str, r)], capture_output=True, text=True)
        if p.returncode == 99 or "==" in p.stderr:
            fail(f"valgrind {' '.join(map(str, r))}: {p.stderr[-2000:]}")
    print(f"valgrind: {len(runs)} runs checked")


def main():
    if not os.access(TOOL, os.X_OK):
        print(f"FAIL: {TOOL} not built (run make)")
        return 1
    for t in (test_decode_self_made, test_decode_pillow_made, test_decode_tolerated, test_decode_errors,
              test_resize, test_input_size, test_preprocess, test_write, test_npy, test_valgrind):
        t0 = time.time()
        print(f"== {t.__name__}")
        t()
        print(f"   ({time.time() - t0:.1f} s)")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all image tests passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
