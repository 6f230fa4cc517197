#!/usr/bin/env python3
"""test_convert.py - `deeplab convert` against checkpoints made here with torch.save.

Checks, bit-exactly, the tensors of zip and legacy checkpoints of a real torchvision
deeplabv3_resnet50 state dict (f32 and f16, --dtype f32/f16), wrapped state dicts, the
"module." prefix, protocol 4, shared storages with offsets and non-contiguous strides, and
then a list of bad inputs that must fail with exit 65 (66: missing file), one line on stderr
and no output or temporary file left: code-running pickles (their marker file must not
appear), compressed and "../" zip entries, big-endian byteorder, truncated files, tensors
reaching outside their storage, negative strides, tar and non-checkpoint files.

Everything is generated in $TEST_TMP from fixed seeds; the safetensors output is read with
json + numpy only (no safetensors package). Run with Debian's python3 (torch, torchvision).
"""
import collections
import glob
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:
    print(f"SKIP: needs torch, torchvision and numpy ({e})")
    sys.exit(77)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEEPLAB = os.environ.get("DEEPLAB", os.path.join(REPO, "bin", "deeplab"))
ST_DUMP = os.path.join(REPO, os.environ.get("BUILD_DIR", "build"), "tests", "tool_st_dump")
TMP = os.environ.get("TEST_TMP") or tempfile.mkdtemp(prefix="test_convert.")
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


# ---------------------------------------------------------------- an independent safetensors reader

ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
             "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path):
    """{name: (dtype name, numpy array)}, after checking the layout deeplab promises."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    raw = data[8:8 + n]
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    assert raw.rstrip(b" ") == raw.rstrip(), "header padding is not spaces"
    header = json.loads(raw.decode("utf-8"), object_pairs_hook=collections.OrderedDict)
    keys = list(header)
    assert keys[0] == "__metadata__" and header["__metadata__"] == {"format": "pt"}, "bad __metadata__"
    names = keys[1:]
    assert names == sorted(names, key=lambda s: s.encode()), "tensor names are not sorted"
    body = data[8 + n:]
    out, pos = {}, 0
    for name in names:
        e = header[name]
        assert sorted(e) == ["data_offsets", "dtype", "shape"], f"{name}: fields {sorted(e)}"
        b, end = e["data_offsets"]
        assert b == pos, f"{name}: data does not follow the previous tensor"
        dt = np.dtype(ST_DTYPES[e["dtype"]])
        count = int(np.prod(e["shape"], dtype=np.int64))
        assert end - b == count * dt.itemsize, f"{name}: size mismatch"
        out[name] = (e["dtype"], np.frombuffer(body[b:end], dtype=dt).reshape(e["shape"]))
        pos = end
    assert pos == len(body), "trailing bytes after the tensors"
    return out


def c_reader_agrees(case, path, tensors):
    """The engine's reader (dl_st_open, through tool_st_dump) sees the same tensors as numpy."""
    if not check(os.path.exists(ST_DUMP), f"{case}: {ST_DUMP} exists (built by make)"):
        return
    p = subprocess.run([ST_DUMP, path], capture_output=True, text=True)
    if not check(p.returncode == 0, f"{case}: dl_st_open accepts it ({p.stderr.strip()})"):
        return
    seen = {}
    for line in p.stdout.splitlines():
        name, dt, shape, crc = line.rsplit(" ", 3)
        seen[name] = (dt, () if shape == "-" else tuple(int(d) for d in shape.split(",")), int(crc, 16))
    want = {k: (dt, a.shape, zlib.crc32(a.tobytes())) for k, (dt, a) in tensors.items()}
    bad = [k for k in want if seen.get(k) != want[k]]
    check(not bad and len(seen) == len(want), f"{case}: dl_st_open agrees on {len(want)} tensors "
          f"(first difference: {bad[:1]}, counts {len(seen)} vs {len(want)})")


# ---------------------------------------------------------------- expected results

TORCH_TO_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
               torch.uint8: "U8", torch.bool: "BOOL"}


def expected(sd, dtype):
    """What convert must write for state dict sd with --dtype dtype ('f32' or 'f16')."""
    out = {}
    for k, t in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith("aux_classifier.") or k.endswith("num_batches_tracked"):
            continue
        if t.is_floating_point():
            t = t.float() if dtype == "f32" else t.float().half()
        out[k] = t.contiguous()
    return out


def as_numpy(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def compare(case, got, want):
    """Bit-exact comparison; prints the first mismatch and the worst difference."""
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        return check(False, f"{case}: tensor names differ (missing {missing[:5]}, unexpected {extra[:5]})")
    worst, worst_name = 0.0, None
    for k, t in want.items():
        dt, arr = got[k]
        ref = as_numpy(t)
        if dt != TORCH_TO_ST[t.dtype] or arr.shape != ref.shape:
            return check(False, f"{case}: {k}: got {dt} {arr.shape}, expected {TORCH_TO_ST[t.dtype]} {ref.shape}")
        if arr.tobytes() != ref.tobytes():
            d = float(np.max(np.abs(arr.astype(np.float64) - ref.astype(np.float64)))) if arr.size else 0.0
            if worst_name is None or d > worst:
                worst, worst_name = d, k
    if worst_name is not None:
        return check(False, f"{case}: not bit-exact; worst difference {worst:g} in {worst_name}")
    return check(True, f"{case}: {len(want)} tensors bit-exact")


def run(*args):
    p = subprocess.run([DEEPLAB, "convert", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def convert_and_compare(case, src, sd, dtype="f32"):
    dst = os.path.join(TMP, case + ".safetensors")
    rc, out, err = run(src, dst, "--dtype", dtype)
    if not check(rc == 0, f"{case}: convert exit {rc} {err.strip()}"):
        return
    print("      " + out.strip())
    check(out.startswith("converted ") and len(out.strip().splitlines()) == 1, f"{case}: one summary line")
    try:
        got = read_safetensors(dst)
    except (AssertionError, ValueError, KeyError) as e:
        check(False, f"{case}: output is not a valid safetensors file: {e}")
        return
    compare(case, got, expected(sd, dtype))
    c_reader_agrees(case, dst, got)
    os.unlink(dst)


def save(obj, name, legacy=False, protocol=2):
    path = os.path.join(TMP, name)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return path


# ---------------------------------------------------------------- good inputs

def small_state_dict():
    """A few layers with BatchNorm (num_batches_tracked) and an aux head to drop."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    sd = collections.OrderedDict(("backbone." + k, v) for k, v in net.state_dict().items())
    sd["aux_classifier.0.weight"] = torch.randn(4, 8, 3, 3)
    sd["aux_classifier.4.bias"] = torch.randn(4)
    return sd


def test_resnet50():
    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    sd = model.state_dict()
    for legacy in (False, True):
        fmt = "legacy" if legacy else "zip"
        convert_and_compare(f"resnet50 {fmt} f32", save(sd, f"r50_{fmt}.pth", legacy), sd)
    convert_and_compare("resnet50 zip f32 -> f16", os.path.join(TMP, "r50_zip.pth"), sd, "f16")
    path = os.path.join(TMP, "r50_like_package.safetensors")
    write_like_safetensors_package(sd, path)
    c_reader_agrees("safetensors.torch.save_file layout", path,
                    {k: (TORCH_TO_ST[t.dtype], as_numpy(t.contiguous())) for k, t in sd.items()})
    os.unlink(path)
    half = model.half().state_dict()
    path = save(half, "r50_half.pth", legacy=True)
    convert_and_compare("resnet50 legacy f16 -> f32", path, half, "f32")
    convert_and_compare("resnet50 legacy f16 -> f16", path, half, "f16")
    for f in glob.glob(os.path.join(TMP, "r50_*.pth")):
        os.unlink(f)


def write_like_safetensors_package(sd, path):
    """The layout of safetensors.torch.save_file: data ordered by dtype (widest first) then name,
    header keys in that order, no __metadata__, compact JSON padded with spaces to 8 bytes."""
    items = sorted(sd.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, pos = {}, [], 0
    for k, t in items:
        b = as_numpy(t.contiguous()).tobytes()
        header[k] = {"dtype": TORCH_TO_ST[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_rounding():
    """f32 -> f16 must equal torch's .half(): subnormals, ties, overflow to inf, NaN, -0."""
    g = torch.Generator().manual_seed(1)
    wide = torch.randn(200000, generator=g) * torch.pow(10.0, torch.rand(200000, generator=g) * 14 - 9)
    specials = [0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, float("inf"), float("-inf"), float("nan"),
                2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1 + 2.0 ** -11,
                1 + 3 * 2.0 ** -11, 2.0 ** -26, 5.96e-8, 6.1e-5]
    ties = (torch.arange(2048, dtype=torch.float64) + 0.5) * 2.0 ** -24  # exactly between subnormals
    sd = {"x.wide": wide, "x.specials": torch.tensor(specials), "x.ties": ties.float()}
    path = save(sd, "rounding.pth")
    convert_and_compare("f32 -> f16 rounding", path, sd, "f16")


def test_wrappers():
    torch.manual_seed(2)
    sd = small_state_dict()
    optimizer = {"state": {0: {"momentum_buffer": torch.randn(8, 3, 3, 3)}},
                 "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0, 1, 2]}]}
    wrapped = {"model": sd, "epoch": 3, "optimizer": optimizer, "best": 0.75, "name": "run 1",
               "history": [1, 2.5, "x", None, (1, 2), True, -7, 2 ** 70, -2 ** 40, [[]], {}],
               "extra": {"ema": {"w": torch.randn(3)}}}
    for legacy in (False, True):
        fmt = "legacy" if legacy else "zip"
        convert_and_compare(f"wrapped model {fmt}", save(wrapped, f"wrap_{fmt}.pth", legacy), sd)
        convert_and_compare(f"wrapped state_dict {fmt}",
                            save({"state_dict": sd, "step": 10}, f"wrap2_{fmt}.pth", legacy), sd)
        module = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
        convert_and_compare(f"module. prefix {fmt}", save(module, f"module_{fmt}.pth", legacy), module)
    # Protocol 2 pickles bytes through _codecs.encode, which is (rightly) not allowed; 4 has opcodes.
    wrapped["raw"] = b"bytes"
    convert_and_compare("protocol 4 zip", save(wrapped, "proto4.pth", protocol=4), sd)
    params = collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=v.is_floating_point()))
                                     for k, v in sd.items())  # pickled through _rebuild_parameter
    convert_and_compare("nn.Parameter values", save(params, "params.pth"), sd)


def test_views():
    """Several tensors viewing one storage at different offsets, with non-contiguous strides."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 3, 4, 5, generator=g)
    halfs = torch.randn(10, 10, generator=g).half()
    sd = collections.OrderedDict([
        ("a.full", base),
        ("a.transposed", base.transpose(1, 3)),
        ("a.stepped", base[:, 1:, ::2, 1:4]),
        ("a.row", base[1, 2]),
        ("a.flat", base.view(-1)[7:50:3]),
        ("a.permuted", base.permute(3, 0, 2, 1)[1:, :, 1:3]),
        ("b.expanded", torch.randn(3, 1, generator=g).expand(3, 4)),
        ("c.scalar", torch.tensor(3.5)),
        ("c.empty", torch.zeros(0, 3)),
        ("c.empty_strided", base[:, :0, ::2]),  # nothing to gather (a fuzzer finding)
        ("c.empty_outer", base[:0, :, ::2]),
        ("d.half", halfs[2:, 3:7].t()),
        ("d.half2", halfs[::3]),
        ("e.double", torch.randn(4, 6, dtype=torch.float64, generator=g).t()),
        ("f.bf16", torch.randn(5, 6, generator=g).bfloat16()[:, ::2]),
        ("g.int", torch.arange(10)[::2]),
        ("g.bool", torch.tensor([True, False, True])),
        ("bn.num_batches_tracked", torch.tensor(7)),
    ])
    for legacy in (False, True):
        fmt = "legacy" if legacy else "zip"
        path = save(sd, f"views_{fmt}.pth", legacy)
        convert_and_compare(f"shared storage views {fmt} f32", path, sd, "f32")
        convert_and_compare(f"shared storage views {fmt} f16", path, sd, "f16")


# ---------------------------------------------------------------- bad inputs

def expect_failure(case, src, code=65, needle=None):
    folder = os.path.join(TMP, "out_" + "".join(c if c.isalnum() else "_" for c in case))
    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, "out.safetensors")
    rc, out, err = run(src, dst)
    lines = err.strip().splitlines()
    ok = check(rc == code, f"{case}: exit {rc}, expected {code}")
    ok &= check(len(lines) == 1, f"{case}: {len(lines)} lines on stderr, expected 1")
    if needle:
        ok &= check(needle in err, f"{case}: stderr names {needle!r}")
    left = os.listdir(folder)
    ok &= check(not left, f"{case}: nothing left in the output folder ({left})")
    print("      stderr: " + err.strip())
    return ok


class Payload:
    """An object whose unpickling runs fn(*args): what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class RawTensor:
    """Pickles as _rebuild_tensor_v2(storage, offset, size, stride): no checks on the way."""

    def __init__(self, storage, offset, size, stride):
        self.a = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.a


class StorageRef:
    """Stands for a storage in a hand-written pickle: pickled as its persistent id."""

    def __init__(self, pid):
        self.pid = pid


def write_legacy(path, obj, storages):
    """A legacy-format file written by hand; storages: [(root_key, float32 numpy array)]."""
    import pickle

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return o.pid if isinstance(o, StorageRef) else None

    with open(path, "wb") as f:
        for x in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True,
                                                  "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(x, f, protocol=2)
        Pickler(f, protocol=2).dump(obj)
        pickle.dump([k for k, _ in storages], f, protocol=2)
        for _, a in storages:
            f.write(struct.pack("<q", a.size) + a.astype("<f4").tobytes())


def test_legacy_views():
    """Very old legacy files: a storage view (view_key, offset, numel) into a root storage."""
    root = np.arange(20, dtype=np.float32) * 1.5
    view = lambda off, n: StorageRef(("storage", torch.FloatStorage, "1", "cpu", 20, ("2", off, n)))
    whole = StorageRef(("storage", torch.FloatStorage, "1", "cpu", 20, None))
    obj = collections.OrderedDict([("v.weight", RawTensor(view(5, 10), 2, (2, 4), (4, 1))),
                                   ("w.weight", RawTensor(whole, 3, (3,), (5,)))])
    path = os.path.join(TMP, "legacy_views.pth")
    write_legacy(path, obj, [("1", root)])
    sd = torch.load(path)  # torch itself reads the hand-written file: the format is right
    check(sd["v.weight"].tolist() == root[7:15].reshape(2, 4).tolist(), "torch.load reads the hand-made view")
    convert_and_compare("legacy storage views", path, sd)
    bad = collections.OrderedDict([("v.weight", RawTensor(view(15, 10), 0, (2,), (1,)))])
    write_legacy(os.path.join(TMP, "bad_view.pth"), bad, [("1", root)])
    expect_failure("legacy view outside its root storage", os.path.join(TMP, "bad_view.pth"), 65, "view")
    bad = collections.OrderedDict([("v.weight", RawTensor(view(5, 10), 4, (2, 4), (4, 1)))])
    write_legacy(os.path.join(TMP, "bad_view2.pth"), bad, [("1", root)])
    expect_failure("tensor outside its legacy view", os.path.join(TMP, "bad_view2.pth"), 65, "element")
    write_legacy(os.path.join(TMP, "bad_count.pth"), obj, [("1", root[:19])])
    expect_failure("legacy storage with a wrong element count", os.path.join(TMP, "bad_count.pth"), 65, "elements")


def test_malicious():
    import builtins
    import subprocess as sp
    marker = os.path.join(TMP, "pwned")
    # The payloads work: plain unpickling runs them (then the marker is removed again).
    probe = save({"w": Payload(os.system, f"touch {marker}")}, "probe.pth")
    torch.load(probe)
    check(os.path.exists(marker), "the os.system payload runs when torch.load unpickles it")
    if os.path.exists(marker):
        os.unlink(marker)
    payloads = [("os.system", Payload(os.system, f"touch {marker}"), "system"),
                ("builtins.eval", Payload(builtins.eval, f"open({marker!r}, 'w')"), "eval"),
                ("subprocess.Popen", Payload(sp.Popen, ["touch", marker]), "Popen")]
    for what, payload, needle in payloads:
        for legacy, proto in ((False, 2), (True, 2), (False, 4)):
            fmt = ("legacy" if legacy else "zip") + f" protocol {proto}"
            sd = collections.OrderedDict([("a.weight", torch.ones(2)), ("b.weight", payload)])
            path = save(sd, f"evil_{what}_{legacy}_{proto}.pth", legacy, proto)
            expect_failure(f"{what} {fmt}", path, 65, needle)
            check(not os.path.exists(marker), f"{what} {fmt}: the payload did not run")


def rezip(src, dst, rename=None, compress=None, extra=None, replace=None):
    """Copies a zip checkpoint entry by entry, changing names, compression or contents."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            name = rename(info.filename) if rename else info.filename
            if replace and info.filename.endswith(replace[0]):
                data = replace[1]
            zout.writestr(name, data, compress_type=compress or zipfile.ZIP_STORED)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def test_bad_files():
    torch.manual_seed(4)
    sd = small_state_dict()
    good = save(sd, "good.pth")
    legacy = save(sd, "good_legacy.pth", legacy=True)
    # A rewritten but unchanged archive still converts: the rewriting itself is not the failure.
    prefix = zipfile.ZipFile(good).namelist()[0].split("/")[0]
    convert_and_compare("rezipped with another prefix", rezip(good, os.path.join(TMP, "renamed.pth"),
                        rename=lambda n: "other" + n[len(prefix):]), sd)
    expect_failure("deflated entries", rezip(good, os.path.join(TMP, "deflated.pth"),
                                             compress=zipfile.ZIP_DEFLATED), 65, "compressed")
    expect_failure("../ entry name", rezip(good, os.path.join(TMP, "dotdot.pth"),
                                           extra={f"{prefix}/../../evil.txt": b"x"}), 65, "..")
    expect_failure("absolute entry name", rezip(good, os.path.join(TMP, "abs.pth"),
                                                extra={"/tmp/evil.txt": b"x"}), 65, "absolute")
    has_byteorder = f"{prefix}/byteorder" in zipfile.ZipFile(good).namelist()
    big = rezip(good, os.path.join(TMP, "big.pth"), replace=("/byteorder", b"big")) if has_byteorder else \
        rezip(good, os.path.join(TMP, "big.pth"), extra={f"{prefix}/byteorder": b"big"})
    expect_failure("big-endian byteorder", big, 65, "byteorder")
    pkl = zipfile.ZipFile(good).read(f"{prefix}/data.pkl")
    expect_failure("zip with a truncated data.pkl", rezip(good, os.path.join(TMP, "cutpkl.pth"),
                   replace=("/data.pkl", pkl[:len(pkl) // 2])), 65, "truncated")
    expect_failure("zip storage entry shorter than its tensor", rezip(good, os.path.join(TMP, "short.pth"),
                   replace=("/data/0", b"\0" * 12)), 65, "bytes")
    for name, path in (("zip", good), ("legacy", legacy)):
        data = open(path, "rb").read()
        for frac in (0.5, 0.9, 0.999):
            cut = os.path.join(TMP, f"cut_{name}_{frac}.pth")
            open(cut, "wb").write(data[:int(len(data) * frac)])
            expect_failure(f"{name} truncated to {frac:.1%}", cut, 65)
    cut = os.path.join(TMP, "cut_header.pth")
    open(cut, "wb").write(open(legacy, "rb").read()[:40])
    expect_failure("legacy truncated in the header pickles", cut, 65)

    storage = torch.arange(10, dtype=torch.float32).storage()
    bad_views = [("offset + extent past the storage", 5, (10,), (1,), "element"),
                 ("stride past the storage", 0, (2, 3), (1, 5), "element"),
                 ("huge stride", 0, (2,), (2 ** 62,), "element"),
                 ("stride overflowing 64 bits", 0, (4,), (2 ** 63 - 1,), "overflow"),
                 ("negative stride", 9, (10,), (-1,), "negative"),
                 ("negative size", 0, (-1,), (1,), "negative")]
    for what, offset, size, stride, needle in bad_views:
        for legacy_fmt in (False, True):
            fmt = "legacy" if legacy_fmt else "zip"
            bad = {"ok.weight": torch.ones(3), "bad.weight": RawTensor(storage, offset, size, stride)}
            expect_failure(f"{what} ({fmt})", save(bad, f"bad_{fmt}.pth", legacy_fmt), 65, needle)

    expect_failure("missing file", os.path.join(TMP, "no-such-file.pth"), 66)
    text = os.path.join(TMP, "text.pth")
    open(text, "w").write("hello\n")
    expect_failure("a text file", text, 65, "not a PyTorch checkpoint")
    empty = os.path.join(TMP, "empty.pth")
    open(empty, "wb").close()
    expect_failure("an empty file", empty, 65)
    tar = os.path.join(TMP, "old.tar.pth")
    with tarfile.open(tar, "w") as tf:
        tf.add(text, arcname="pickle")
    expect_failure("a tar-format checkpoint", tar, 65, "tar")
    expect_failure("not a state dict", save([torch.ones(2)], "list.pth"), 65, "state dict")
    expect_failure("a dict entry that is not a tensor", save({"a": torch.ones(2), "b": 3}, "mixed.pth"), 65, '"b"')
    expect_failure("a newline in a bad entry's name", save({"x\ny": [1]}, "newline.pth"), 65, "x?y")


def main():
    if not os.path.exists(DEEPLAB):
        print(f"FAIL: {DEEPLAB} not found (run make first)")
        return 1
    torch.manual_seed(0)
    np.random.seed(0)
    test_resnet50()
    test_rounding()
    test_wrappers()
    test_views()
    test_legacy_views()
    test_malicious()
    test_bad_files()
    print("----")
    if failures:
        print(f"{len(failures)} checks failed:")
        for f in failures:
            print("  " + f)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
