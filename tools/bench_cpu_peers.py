#!/usr/bin/env python3
"""bench_cpu_peers.py - the Python half of tools/bench_cpu_peers.sh (Debian's torch).

    bench_cpu_peers.py prepare DIR SIZE        seeded ResNet-101 -> DIR/model.safetensors (deeplab),
                                               DIR/model.onnx (ONNX Runtime), DIR/photo.png, its
                                               normalised tensor DIR/input.f32, torchvision's
                                               logits DIR/ref.npy
    bench_cpu_peers.py torch DIR THREADS RUNS WARMUP   times PyTorch eager (NCHW and channels_last)
                                               on DIR's model, prints one JSON line per layout
    bench_cpu_peers.py parity DIR NAME FILE    max |FILE - ref| / max |ref| and the arg-max share
                                               (FILE: .npy, or .f32 in the logits' shape), JSON
    bench_cpu_peers.py summarize DIR OUTDIR    the table (markdown) of DIR/results.jsonl, JSON to OUTDIR
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import dlref  # noqa: E402  (seeded models, the safetensors writer, photos, preprocessing)


class Logits(torch.nn.Module):
    """torchvision's model returning the logits tensor (ONNX export wants tensors, not a dict)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def load(d):
    model = dlref.make_model("resnet101", 21, seed=0)
    model.aux_classifier = None
    return model.eval()


def prepare(d, size):
    os.makedirs(d, exist_ok=True)
    model = dlref.make_model("resnet101", 21, seed=0)
    dlref.save_safetensors(os.path.join(d, "model.safetensors"), model.state_dict())
    model.aux_classifier = None
    model.eval()
    img = dlref.photo(size, size, seed=3)
    img.save(os.path.join(d, "photo.png"))
    x = dlref.to_input(img)
    x.numpy().astype("<f4").tofile(os.path.join(d, "input.f32"))
    with torch.inference_mode():
        np.save(os.path.join(d, "ref.npy"), model(x)["out"].numpy())
    with torch.no_grad():
        torch.onnx.export(Logits(model), x, os.path.join(d, "model.onnx"), opset_version=13,
                          input_names=["input"], output_names=["out"])
    print(f"prepared {d}: seeded ResNet-101, {size}x{size}, ONNX opset 13")


def time_torch(d, threads, runs, warmup):
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    model = load(d)
    size = int(round((os.path.getsize(os.path.join(d, "input.f32")) / 12) ** 0.5))
    x = torch.from_numpy(np.fromfile(os.path.join(d, "input.f32"), "<f4").reshape(1, 3, size, size))
    for name, fmt in [("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)]:
        m = model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        t = []
        with torch.inference_mode():
            for i in range(warmup + runs):
                t0 = time.perf_counter()
                m(xi)["out"]
                if i >= warmup:
                    t.append(1e3 * (time.perf_counter() - t0))
        t = np.array(t)
        print(json.dumps({"layout": name, "median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
                          "p90_ms": float(np.percentile(t, 90)), "times_ms": t.tolist(), "torch": torch.__version__}))


def parity(d, name, path):
    ref = np.load(os.path.join(d, "ref.npy"))
    ours = np.load(path) if path.endswith(".npy") else np.fromfile(path, "<f4").reshape(ref.shape)
    rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
    share = float((ours.argmax(1) == ref.argmax(1)).mean())
    print(json.dumps({"kind": "parity", "name": name, "max_rel": rel, "argmax_share": share}))


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def summarize(d, outdir):
    rows = [json.loads(line) for line in open(os.path.join(d, "results.jsonl"))]
    meta = next(r for r in rows if r.get("kind") == "meta")
    par = {r["name"]: r for r in rows if r.get("kind") == "parity"}
    times = [r for r in rows if r.get("kind") == "time"]
    rounds = sorted({r["round"] for r in times})
    print(f"## CPU peers: DeepLabV3-ResNet101, {meta['size']}x{meta['size']}, batch 1, one run\n")
    for k in ["date", "cpu", "commit", "torch", "onnxruntime", "load_before", "load_after"]:
        print(f"- {k}: {meta.get(k)}")
    print(f"- {len(rounds)} interleaved round(s); per round and implementation: {meta['warmup']} warm-up + "
          f"{meta['runs']} timed runs (PyTorch: {meta['torch_warmup']} + {meta['torch_runs']}), median")
    print("- logits on one photo against torchvision fp32 (max |diff| / max |ref|, arg-max share): "
          + "; ".join(f"{n} {p['max_rel']:.1e}, {100 * p['argmax_share']:.2f}%" for n, p in par.items()) + "\n")
    names = []
    for r in times:
        if r["name"] not in names:
            names.append(r["name"])
    print("| threads | implementation | " + " | ".join(f"round {k} ms" for k in rounds) + " | best ms | vs ORT fp32 (best) |")
    print("|---|---|" + "---|" * len(rounds) + "---|---|")
    table = []
    for threads in sorted({r["threads"] for r in times}, reverse=True):
        ort = min(r["median_ms"] for r in times if r["threads"] == threads and r["name"] == "ONNX Runtime fp32")
        for n in names:
            rs = {r["round"]: r for r in times if r["threads"] == threads and r["name"] == n}
            if not rs:
                continue
            best = min(r["median_ms"] for r in rs.values())
            cells = " | ".join(f"{rs[k]['median_ms']:.0f}" if k in rs else "-" for k in rounds)
            print(f"| {threads} | {n} | {cells} | {best:.0f} | {ort / best:.2f}x |")
            table.append({"threads": threads, "name": n, "best_ms": best, "vs_ort": ort / best,
                          "rounds_ms": [rs[k]["median_ms"] for k in rounds if k in rs]})
    if outdir:
        os.makedirs(outdir, exist_ok=True)
        path = os.path.join(outdir, f"cpu_peers_{meta['size']}_{meta['date']}_{meta['commit']}.json")
        with open(path, "w") as f:
            json.dump({"meta": meta, "parity": par, "table": table, "runs": times}, f, indent=1)
        print(f"\n(JSON: {os.path.relpath(path, ROOT)})")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prepare":
        prepare(args[0], int(args[1]))
    elif cmd == "torch":
        time_torch(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "parity":
        parity(*args)
    elif cmd == "summarize":
        summarize(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "meta":
        print(json.dumps({"kind": "meta", "date": datetime.date.today().isoformat(), "cpu": cpu_name(),
                          "torch": torch.__version__, "torchvision": torchvision.__version__}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
