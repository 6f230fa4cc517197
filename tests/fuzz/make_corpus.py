#!/usr/bin/env python3
"""make_corpus.py - writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

Small valid files of every kind each reader accepts and known-bad ones (the cases of
tests/test_robustness.py), so that fuzzing starts deep inside each format. Seeded: running it
again gives the same files. Needs Debian's python3 with numpy, Pillow and torch.

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import collections
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(6)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- images

def chunk(tag, data, crc=None):
    crc = zlib.crc32(tag + data) if crc is None else crc
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc & 0xFFFFFFFF)


SIG = b"\x89PNG\r\n\x1a\n"


def png(w, h, depth, ct, raw, interlace=0, extra=b""):
    return (SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlace)) + extra +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def images():
    rgb = Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8))
    put("image", "rgb8.png", pil_bytes(rgb, "PNG"))
    put("image", "rgba8.png", pil_bytes(rgb.convert("RGBA"), "PNG"))
    put("image", "gray8.png", pil_bytes(rgb.convert("L"), "PNG"))
    put("image", "gray_alpha.png", pil_bytes(rgb.convert("LA"), "PNG"))
    put("image", "bilevel.png", pil_bytes(rgb.convert("1"), "PNG"))
    put("image", "palette.png", pil_bytes(rgb.convert("P"), "PNG", transparency=1))
    put("image", "palette4.png", pil_bytes(rgb.convert("P", colors=16), "PNG", bits=4))
    put("image", "gray16.png", pil_bytes(Image.fromarray(rng.integers(0, 65536, (5, 4), dtype=np.uint16)), "PNG"))
    put("image", "rgb16.png", png(3, 2, 16, 2, b"".join(b"\0" + rng.bytes(18) for _ in range(2))))
    put("image", "rgba16.png", png(2, 2, 16, 6, b"".join(b"\0" + rng.bytes(16) for _ in range(2))))
    # Adam7 of a 9x9 8-bit gray image: the 7 passes' rows, each with filter byte 0
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        cols, rows = len(range(x0, 9, dx)), len(range(y0, 9, dy))
        raw += b"".join(b"\0" + rng.bytes(cols) for _ in range(rows)) if cols and rows else b""
    put("image", "interlaced.png", png(9, 9, 8, 0, raw, interlace=1))
    trns = chunk(b"tRNS", b"\x00\x10\x00\x20\x00\x30")
    text = chunk(b"tEXt", b"Comment\0hello") + chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * 100))
    put("image", "rgb_trns_text.png", png(2, 2, 8, 2, b"\0" + rng.bytes(6) + b"\1" + rng.bytes(6), extra=trns + text))
    good = pil_bytes(rgb, "PNG")
    i = good.index(b"IDAT")
    put("image", "bad_truncated_idat.png", good[: i + 10])
    put("image", "bad_crc.png", good[: i + 20] + bytes([good[i + 20] ^ 0xFF]) + good[i + 21 :])
    put("image", "bad_zlib.png", png(2, 2, 8, 0, b"") [:33] + chunk(b"IDAT", b"\x78\x9c\xff\xff\xff") + chunk(b"IEND", b""))
    put("image", "bad_huge_header.png", SIG + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
        chunk(b"IEND", b""))
    put("image", "bad_big_text.png", good[:33] + struct.pack(">I", 1 << 30) + b"tEXt" + b"x" * 16)
    put("image", "bad_text.png", b"this is not an image\n")
    put("image", "empty.png", b"")
    # JPEG: baseline colour and gray, progressive, restart markers; truncated; many scans
    put("image", "baseline.jpg", pil_bytes(rgb, "JPEG", quality=90))
    put("image", "gray.jpg", pil_bytes(rgb.convert("L"), "JPEG"))
    put("image", "subsampled.jpg", pil_bytes(rgb.resize((17, 9)), "JPEG", subsampling=2))
    prog = pil_bytes(rgb.resize((16, 16)), "JPEG", progressive=True, quality=80)
    put("image", "progressive.jpg", prog)
    put("image", "bad_truncated.jpg", prog[: len(prog) // 2])
    put("image", "many_scans.jpg", many_scans(prog, 300))


def many_scans(jpeg, copies):
    """The JPEG with its last scan (SOS segment and entropy-coded data) repeated."""
    sos = jpeg.rindex(b"\xff\xda")
    eoi = jpeg.rindex(b"\xff\xd9")
    return jpeg[:eoi] + jpeg[sos:eoi] * copies + jpeg[eoi:]


# ---------------------------------------------------------------- safetensors

def st_bytes(header, data, length=None):
    h = json.dumps(header, separators=(",", ":")).encode() if isinstance(header, dict) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def safetensors():
    ok = {"__metadata__": {"format": "pt"},
          "a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
          "b.bias": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},
          "c.n": {"dtype": "I64", "shape": [], "data_offsets": [22, 30]},
          "d.empty": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [30, 30]}}
    data = rng.bytes(30)
    put("safetensors", "valid.safetensors", st_bytes(ok, data))
    put("safetensors", "valid_padded.safetensors", st_bytes(json.dumps(ok).encode() + b"   ", data))
    one = {"x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
    put("safetensors", "bad_len_max.safetensors", st_bytes(one, b"abcd", length=2**64 - 1))
    put("safetensors", "bad_len_past_end.safetensors", st_bytes(one, b"abcd", length=100))
    put("safetensors", "bad_utf8.safetensors", st_bytes(b'{"\xff":1}', b""))
    put("safetensors", "bad_json.safetensors", st_bytes(b"{hello", b""))
    put("safetensors", "bad_overlap.safetensors", st_bytes(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"123456"))
    put("safetensors", "bad_shape_overflow.safetensors", st_bytes(
        {"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 4]}}, b"1234"))
    put("safetensors", "bad_dtype.safetensors", st_bytes(
        {"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"1"))
    put("safetensors", "bad_trailing.safetensors", st_bytes(one, b"abcdef"))
    put("safetensors", "bad_duplicate.safetensors", st_bytes(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        b"12"))


# ---------------------------------------------------------------- checkpoints

class Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def torch_bytes(obj, legacy=False):
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=not legacy)
    return b.getvalue()


def checkpoints():
    torch.manual_seed(1)
    sd = collections.OrderedDict([("conv.weight", torch.randn(2, 1, 1, 2)), ("bn.bias", torch.randn(2).half()),
                                  ("bn.num_batches_tracked", torch.tensor(3))])
    put("checkpoint", "zip.pth", torch_bytes(sd))
    put("checkpoint", "legacy.pth", torch_bytes(sd, legacy=True))
    base = torch.arange(6, dtype=torch.float32)
    views = {"t": base.view(2, 3).t(), "s": base[1:4], "bf": torch.ones(2, dtype=torch.bfloat16)}
    put("checkpoint", "views_zip.pth", torch_bytes(views))
    put("checkpoint", "views_legacy.pth", torch_bytes(views, legacy=True))
    put("checkpoint", "wrapped.pth", torch_bytes({"model": {"module.a": torch.ones(1)}}))
    put("checkpoint", "bad_os_system.pth", torch_bytes({"a": Payload(os.system, "true")}))
    put("checkpoint", "bad_eval_legacy.pth", torch_bytes({"a": Payload(eval, "1")}, legacy=True))
    z = zip_bytes(torch_bytes(sd), compress=zipfile.ZIP_DEFLATED)
    put("checkpoint", "bad_deflated.pth", z)
    put("checkpoint", "bad_dotdot.pth", zip_bytes(torch_bytes(sd), extra={"archive/../../evil": b"x"}))
    # bare pickles (the legacy path reads a pickle first): unknown opcode, huge memo index,
    # stack underflow
    put("checkpoint", "bad_opcode.pkl", b"\x80\x02}q\x00(X\x01\x00\x00\x00ai\x00.")
    put("checkpoint", "bad_memo.pkl", b"\x80\x02}r\xff\xff\xff\x7f.")
    put("checkpoint", "bad_underflow.pkl", b"\x80\x02s.")


def zip_bytes(src, compress=zipfile.ZIP_STORED, extra=None):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename), compress_type=compress)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return out.getvalue()


# ---------------------------------------------------------------- command lines

def cli():
    # first byte: command (0 segment, 1 rmbg, 2 info, 3 convert, 4 bench); then NUL-separated args
    cases = [
        (0, ["-w", "m.safetensors", "--size", "0", "--device", "cpu", "-o", "o.png", "in.png"]),
        (0, ["--save-logits", "l.npy", "-v", "--threads=2", "--reference", "-o", "o.png", "in.png"]),
        (1, ["--max-pixels", "1000", "--max-side=10", "--max-png-chunk", "64", "-o", "o.png", "in.png"]),
        (1, ["--max-jpeg-scans", "5", "--max-header-bytes", "99", "--size", "abc", "x.png"]),
        (2, ["--max-pickle-bytes", "10", "--max-pickle-memo", "3", "--max-pickle-stack=4", "w.safetensors"]),
        (2, ["--help"]),
        (3, ["a.pth", "b.safetensors", "--dtype", "f16"]),
        (3, ["a.pth", "a.pth"]),
        (4, ["--size", "33x17", "--batch", "1,2,8", "--backend", "native,reference", "--precision", "fp32",
             "--runs", "3", "--warmup", "0", "--threads", "1", "--layers", "--json", "--device", "cpu"]),
    ]
    for i, (cmd, args) in enumerate(cases):
        put("cli", f"args{i}", bytes([cmd]) + b"\0".join(a.encode() for a in args))


# ---------------------------------------------------------------- the HTTP API's parameters

def request():
    # first byte: endpoint (0 removebg, 1 rembg, 2 new session, 3 render; +4: URL fetching allowed);
    # second byte: 0 fields (NUL-separated name, value; '@name' a file part), 1 a JSON body
    fields = [
        (0, [("@image_file", "PNG"), ("size", "full"), ("type", "person"), ("format", "zip"), ("crop", "true"),
             ("crop_margin", "10% 5px"), ("roi", "10% 0% 90% 100%"), ("scale", "50%"), ("position", "0% 100%")]),
        (0, [("image_file_b64", "iVBORw0KGgo="), ("bg_color", "lightblue"), ("channels", "alpha"),
             ("semitransparency", "false"), ("add_shadow", "false"), ("type_level", "1")]),
        (4, [("image_url", "http://example.com/a.png"), ("bg_image_url", "http://example.com/b.jpg"),
             ("classes", "person,dog,15"), ("keep_at", "3,4;10,2"), ("largest", "1"), ("threshold", "0.4")]),
        (1, [("@file", "x"), ("model", "u2net"), ("a", "false"), ("af", "240"), ("om", "true"), ("bgc", "255,0,0,128"),
             ("extras", "{}")]),
        (3, [("preview", "12"), ("stroke", "keep,3,1,1,20,14"), ("stroke", "erase,2.5,5,5"), ("refine", "none"),
             ("refine_radius", "4"), ("refine_eps", "0.01"), ("decontaminate", "true"), ("jpeg_quality", "40"),
             ("strokes", '[{"mode":"keep","radius":2,"points":[[1,1],[9,9]]}]')]),
    ]
    for i, (e, pairs) in enumerate(fields):
        put("request", f"fields{i}", bytes([e, 0]) + b"\0".join(f"{k}\0{v}".encode() for k, v in pairs))
    bodies = [
        (0, {"image_file_b64": "iVBORw0KGgo=", "size": "preview", "crop": True, "bg_color": "#0f08"}),
        (3, {"classes": ["person", 12], "keep_at": [[2, 3]], "preview": 10, "position": "center", "scale": "30%",
             "strokes": [{"mode": "erase", "radius": 1.5, "points": [[0, 0], [23, 15], [4, 9]]}]}),
        (2, {"image_file_b64": "data:image/png;base64,AAAA", "size": "auto"}),
    ]
    for i, (e, body) in enumerate(bodies):
        put("request", f"json{i}", bytes([e, 1]) + json.dumps(body).encode())


if __name__ == "__main__":
    # Inputs that found a bug ("finding-*", added by hand from build-fuzz/fuzz-artifacts) stay.
    # With target names as arguments (image, safetensors, checkpoint, cli, request) only those.
    import sys
    makers = {"image": images, "safetensors": safetensors, "checkpoint": checkpoints, "cli": cli, "request": request}
    chosen = sys.argv[1:] or list(makers)
    for name in chosen:
        d = os.path.join(HERE, "corpus", name)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if not f.startswith("finding-"):
                os.unlink(os.path.join(d, f))
    for name in chosen:
        makers[name]()
    for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        files = os.listdir(os.path.join(HERE, "corpus", t))
        size = sum(os.path.getsize(os.path.join(HERE, "corpus", t, f)) for f in files)
        print(f"corpus/{t}: {len(files)} files, {size} bytes")
