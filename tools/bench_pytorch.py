#!/usr/bin/env python3
"""bench_pytorch.py - PyTorch and deeplab side by side, in one run, on the same weights.

    tools/bench_pytorch.py --device cpu [--threads 2] [--size 520] [--runs 5] [-w W.safetensors]
    tools/bench_pytorch.py --device cuda [--batch 1,8] [--backends native,cudnn] [--precisions fp32,...]

CPU mode (issue 7): PyTorch eager fp32 in NCHW and in channels_last, with the same number of
threads as deeplab, then `deeplab bench --device cpu` (fast path and, with --reference, the
plain-C path). Before timing, PyTorch's logits are checked against deeplab's on one input
(max |diff| / max |torch| <= 1e-4), so both time the same function.

CUDA mode (issues 4, 12): the baselines B0-B4 of shared/PERFORMANCE.md (true fp32; PyTorch's
default TF32 in NCHW and channels_last; fp16/bf16 channels_last; the same in a CUDA graph;
torch.compile max-autotune with freezing, compile time reported apart), timed with CUDA events,
then `deeplab bench --device cuda` in every precision asked for, after checking each precision's
GPU logits against B0's (within the precision's bar, or 1.5x PyTorch's own error in that
precision, printed beside). deeplab's rows give both its device time (CUDA events around the
network, like PyTorch's) and its wall time with the output copied back (--output). With
--verdict, the issue-12 bars are judged at the end: bf16 batch 1 <= 1.5 ms per image, batch 8
>= 700 images/s, faster than every PyTorch row of the same batch.

Without -w, a seeded random ResNet-101 (BatchNorm calibrated as in the tests) is made with
torchvision and saved as safetensors for deeplab: both run identical weights; timings do not
depend on the values. Writes a markdown table to stdout and JSON beside it with --out DIR.
Everything a result needs to be traced is printed with it: CPU, threads, versions, commit.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPLAB = os.environ.get("DEEPLAB", os.path.join(ROOT, "bin", "deeplab"))  # e.g. build-gpu/bin/deeplab
sys.path.insert(0, os.path.join(ROOT, "tests"))
import dlref  # noqa: E402  (seeded models, the safetensors writer, the preprocessing)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit():
    """The commit deeplab was built from, as `deeplab --version` reports it (the build takes it
    from git, or from make GIT_COMMIT=... where the tree is a copy without .git)."""
    try:
        v = subprocess.run([DEEPLAB, "--version"], capture_output=True, text=True).stdout
        return v.split("(commit ")[1].split(")")[0]
    except (OSError, IndexError):
        return "unknown"


def load_safetensors(path):
    """A minimal safetensors reader (the Python package is not in Debian)."""
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    types = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "BF16":
            raw = np.frombuffer(data[b:end], np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[b:end], types[e["dtype"]])
        out[name] = torch.from_numpy(arr.copy().reshape(e["shape"]))
    return out


def torch_model(weights, tmp):
    """torchvision's model with the weights deeplab will use; returns (model, safetensors path)."""
    if weights:
        sd = load_safetensors(weights)
        classes = sd["classifier.4.weight"].shape[0]
        depth = 101 if "backbone.layer3.22.conv1.weight" in sd else 50
        ctor = getattr(torchvision.models.segmentation, f"deeplabv3_resnet{depth}")
        model = ctor(weights=None, weights_backbone=None, num_classes=classes, aux_loss=False)
        missing, unexpected = model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                                                    strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing:
            sys.exit(f"bench_pytorch: {weights}: missing {missing[:3]}")
        return model.eval(), weights
    model = dlref.make_model("resnet101", 21, seed=0)
    path = os.path.join(tmp, "random_r101.safetensors")
    dlref.save_safetensors(path, model.state_dict())
    return model, path


def time_it(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t = np.array(t)
    return {"median_ms": 1e3 * float(np.median(t)), "p10_ms": 1e3 * float(np.percentile(t, 10)),
            "p90_ms": 1e3 * float(np.percentile(t, 90))}


def check_parity(model, st, size, threads, tmp):
    """deeplab's logits vs PyTorch's on one photo at size x size: returns max rel error."""
    img = dlref.photo(size, size, seed=3)
    png = os.path.join(tmp, "photo.png")
    img.save(png)
    x = dlref.to_input(img)
    with torch.inference_mode():
        ref = model(x)["out"].numpy()
    npy = os.path.join(tmp, "logits.npy")
    subprocess.run([DEEPLAB, "segment", "-w", st, "--size", "0", "--device", "cpu",
                    "--threads", str(threads), "--save-logits", npy, "-o", os.path.join(tmp, "seg.png"), png], check=True)
    ours = np.load(npy)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def bench_cpu(args, tmp):
    torch.set_num_threads(args.threads)
    model, st = torch_model(args.weights, tmp)
    model.aux_classifier = None
    rel = check_parity(model, st, min(args.size, 160), args.threads, tmp)
    print(f"parity: deeplab vs PyTorch logits, max rel error {rel:.2e}", file=sys.stderr)
    if rel > 1e-4:
        sys.exit(f"bench_pytorch: deeplab and PyTorch disagree (max rel {rel:.2e}); not timing different functions")

    rows = []
    x = torch.randn(1, 3, args.size, args.size)
    for name, fmt in [("PyTorch eager fp32 NCHW", torch.contiguous_format), ("PyTorch eager fp32 channels_last", torch.channels_last)]:
        m = model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        print(f"bench: {name} ...", file=sys.stderr)
        with torch.inference_mode():
            r = time_it(lambda: m(xi)["out"], args.runs, args.warmup)
        rows.append(dict(name=name, **r))

    cmd = [DEEPLAB, "bench", "--device", "cpu", "-w", st, "--size", str(args.size),
           "--threads", str(args.threads), "--runs", str(args.runs), "--warmup", str(args.warmup), "--json"]
    if args.reference:
        cmd += ["--backend", "native,reference"]
    print("bench: " + " ".join(cmd[1:]), file=sys.stderr)
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    for r in ours["results"]:
        rows.append(dict(name=f"deeplab {r['backend']} ({r['path']}) fp32", median_ms=r["median_ms"],
                         p10_ms=r["p10_ms"], p90_ms=r["p90_ms"]))
    return rows, rel, ours


def cuda_time(fn, runs, warmup):
    """Median/p10/p90 of fn() timed with CUDA events, after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        t.append(a.elapsed_time(b))
    t = np.array(t)
    return {"median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90))}


def set_fp32_precision(ieee):
    """B0 (true fp32) or PyTorch's defaults (TF32 convolutions), on old and new PyTorch."""
    torch.backends.cudnn.benchmark = True
    try:  # PyTorch >= 2.9
        torch.backends.cudnn.conv.fp32_precision = "ieee" if ieee else "tf32"
        torch.backends.cuda.matmul.fp32_precision = "ieee" if ieee else "tf32"
    except AttributeError:
        torch.backends.cudnn.allow_tf32 = not ieee
        torch.backends.cuda.matmul.allow_tf32 = not ieee


def bench_cuda(args, tmp):
    """Baselines B0-B4 of shared/PERFORMANCE.md, then `deeplab bench --device cuda`, same weights."""
    import copy
    model, st = torch_model(args.weights, tmp)
    model.aux_classifier = None
    model = model.cuda().eval()
    rows, compile_s = [], {}
    # parity first: deeplab on the GPU against B0 (true fp32) on one photo
    set_fp32_precision(ieee=True)
    img = dlref.photo(args.size, args.size, seed=3)
    png = os.path.join(tmp, "photo.png")
    img.save(png)
    with torch.inference_mode():
        ref = model(dlref.to_input(img).cuda())["out"].float().cpu().numpy()
    bars = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2, "bf16": 3e-2}
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}
    parity = {}
    for prec in args.precisions.split(","):
        npy = os.path.join(tmp, f"logits_{prec}.npy")
        subprocess.run([DEEPLAB, "segment", "-w", st, "--size", "0", "--device", "cuda", "--precision", prec,
                        "--save-logits", npy, "-o", os.path.join(tmp, "seg.png"), png], check=True)
        ours = np.load(npy)
        rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
        agree = float((ours.argmax(1) == ref.argmax(1)).mean())
        own = None
        if prec in torch_dtype:  # PyTorch's own error in that precision, on the same input
            mh = copy.deepcopy(model).to(dtype=torch_dtype[prec], memory_format=torch.channels_last)
            with torch.inference_mode():
                o = mh(dlref.to_input(img).cuda().to(torch_dtype[prec]).contiguous(memory_format=torch.channels_last))
            own = float(np.abs(o["out"].float().cpu().numpy() - ref).max() / np.abs(ref).max())
            del mh
        elif prec == "tf32":
            set_fp32_precision(ieee=False)
            with torch.inference_mode():
                own = float(np.abs(model(dlref.to_input(img).cuda())["out"].float().cpu().numpy() - ref).max()
                            / np.abs(ref).max())
            set_fp32_precision(ieee=True)
        allowed = max(bars[prec], 1.5 * own) if own is not None else bars[prec]
        parity[prec] = {"rel": rel, "argmax": agree, "torch_rel": own, "allowed": allowed, "ok": rel <= allowed}
        print(f"parity: deeplab {prec} vs PyTorch B0 logits, max rel {rel:.2e} (PyTorch's own {prec}: "
              f"{'n/a' if own is None else f'{own:.2e}'}; allowed {allowed:.2e}), arg-max equal on "
              f"{100 * agree:.2f}%: {'ok' if rel <= allowed else 'FAIL'}", file=sys.stderr)
    rel = parity.get("fp32", {}).get("rel", float("nan"))
    if not all(v["ok"] for v in parity.values()) and not args.time_anyway:
        sys.exit("bench_pytorch: deeplab's logits are off in " + ", ".join(k for k, v in parity.items() if not v["ok"])
                 + ": not timing a different function (--time-anyway to time it still)")

    for batch in args.batch:
        x32 = torch.randn(batch, 3, args.size, args.size, device="cuda")
        configs = [("B0 true fp32 NCHW", True, torch.float32, torch.contiguous_format),
                   ("B1 default (tf32) NCHW", False, torch.float32, torch.contiguous_format),
                   ("B1 default (tf32) channels_last", False, torch.float32, torch.channels_last),
                   ("B2 fp16 channels_last", False, torch.float16, torch.channels_last),
                   ("B2 bf16 channels_last", False, torch.bfloat16, torch.channels_last)]
        for name, ieee, dtype, fmt in configs:
            set_fp32_precision(ieee)
            m = copy.deepcopy(model).to(dtype=dtype, memory_format=fmt)
            x = x32.to(dtype=dtype).contiguous(memory_format=fmt)
            print(f"bench: {name} batch {batch} ...", file=sys.stderr)
            with torch.inference_mode():
                rows.append(dict(name=name, batch=batch, **cuda_time(lambda: m(x)["out"], args.runs, args.warmup)))
                if dtype != torch.float32:
                    # B3: the same, captured in a CUDA graph and replayed (no per-kernel launch cost)
                    static_x = x.clone()
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            m(static_x)
                    torch.cuda.current_stream().wait_stream(s)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        m(static_x)
                    rows.append(dict(name=name.replace("B2", "B3") + " + CUDA graph", batch=batch,
                                     **cuda_time(g.replay, args.runs, args.warmup)))
            if dtype != torch.float32 and not args.no_compile and dtype_name(dtype) in args.compile_dtypes.split(","):
                # B4: torch.compile with freezing, max-autotune (compile time reported apart)
                import torch._inductor.config as inductor_config
                inductor_config.freezing = True
                for mode in args.compile_modes.split(","):
                    if args.deadline and time.time() > args.deadline - 150:
                        print(f"bench: B4 {mode} batch {batch}: skipped, not enough time left", file=sys.stderr)
                        compile_s[f"B4 {dtype_name(dtype)} compile {mode} batch {batch}"] = None
                        continue
                    torch._dynamo.reset()
                    t0 = time.perf_counter()
                    cm = torch.compile(m, mode=mode, fullgraph=True, dynamic=False)
                    with torch.inference_mode():
                        cm(x)
                        torch.cuda.synchronize()
                        key = f"B4 {dtype_name(dtype)} compile {mode}"
                        compile_s[f"{key} batch {batch}"] = time.perf_counter() - t0
                        rows.append(dict(name=key, batch=batch, **cuda_time(lambda: cm(x)["out"], args.runs, args.warmup)))
            del m
            torch.cuda.empty_cache()

    cmd = [DEEPLAB, "bench", "--device", "cuda", "-w", st, "--size", str(args.size),
           "--batch", ",".join(map(str, args.batch)), "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--backend", args.backends, "--precision", args.precisions, "--output", args.output, "--json"]
    print("bench: " + " ".join(cmd[1:]), file=sys.stderr)
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    for r in ours["results"]:
        if "device_median_ms" in r:  # the network alone, timed as PyTorch's rows are
            rows.append(dict(name=f"deeplab {r['backend']} {r['precision']} (device)", batch=r["batch"],
                             median_ms=r["device_median_ms"], p10_ms=r["device_p10_ms"], p90_ms=r["device_p90_ms"]))
        rows.append(dict(name=f"deeplab {r['backend']} {r['precision']} (wall, {r.get('output', 'logits')} to the host)",
                         batch=r["batch"], median_ms=r["median_ms"], p10_ms=r["p10_ms"], p90_ms=r["p90_ms"]))
    return rows, rel, ours, compile_s, parity


def judge(rows, batches):
    """Issue 12's bars on deeplab's bf16 device times: printed, and returned as a dict."""
    out, lines = {}, []
    for b in batches:
        ours = [r for r in rows if r["name"] == "deeplab native bf16 (device)" and r["batch"] == b]
        peers = [r for r in rows if r["name"].startswith(("B0", "B1", "B2", "B3", "B4")) and r["batch"] == b]
        if not ours:
            lines.append(f"batch {b}: no deeplab bf16 device time: FAIL")
            out[f"batch{b}"] = False
            continue
        ms = ours[0]["median_ms"]
        best = min(peers, key=lambda r: r["median_ms"]) if peers else None
        faster = best is not None and ms < best["median_ms"]
        if b == 1:
            bar_ok, bar = ms <= 1.5, f"{ms:.3f} ms per image (bar: <= 1.5)"
        else:
            ips = b / ms * 1e3
            bar_ok, bar = ips >= 700, f"{ips:.0f} images/s (bar: >= 700)"
        vs = f"best PyTorch {best['name']} {best['median_ms']:.3f} ms" if best else "no PyTorch row"
        lines.append(f"batch {b}: deeplab bf16 {bar}: {'PASS' if bar_ok else 'FAIL'}; vs {vs}: "
                     f"{'faster' if faster else 'NOT faster'} ({best['median_ms'] / ms:.2f}x)" if best else vs)
        out[f"batch{b}"] = bool(bar_ok and faster)
    print("\n## Verdict (issue 12: bf16, device times, 520x520)\n")
    for line in lines:
        print(f"- {line}")
    out["all"] = all(out.values()) if out else False
    print(f"- overall: {'PASS' if out['all'] else 'FAIL'}")
    return out


def dtype_name(dtype):
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=lambda v: [int(b) for b in v.split(",")], default=[1, 8],
                    help="cuda: batches to time (default 1,8)")
    ap.add_argument("--backends", default="native", help="cuda: deeplab backends to time, e.g. native,cudnn")
    ap.add_argument("--precisions", default="fp32", help="cuda: deeplab precisions to time")
    ap.add_argument("--no-compile", action="store_true", help="cuda: skip the torch.compile baselines (B4)")
    ap.add_argument("--compile-dtypes", default="fp16,bf16", help="cuda: B4 for these half types (default fp16,bf16)")
    ap.add_argument("--compile-modes", default="max-autotune,max-autotune-no-cudagraphs",
                    help="cuda: torch.compile modes for B4")
    ap.add_argument("--budget", type=float, default=0,
                    help="cuda: seconds for the whole run; B4 compiles that would not fit are skipped (0: no limit)")
    ap.add_argument("--output", default="logits", help="cuda: what deeplab returns per forward: logits, mass, labels")
    ap.add_argument("--verdict", action="store_true", help="cuda: judge issue 12's bars at the end")
    ap.add_argument("--time-anyway", action="store_true", help="cuda: time even when a precision's logits are off")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--size", type=int, default=520)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("-w", "--weights")
    ap.add_argument("--reference", action="store_true", help="also time deeplab's plain-C path")
    ap.add_argument("--out", help="folder for the JSON result")
    args = ap.parse_args()
    args.deadline = time.time() + args.budget if args.budget else 0

    if args.device == "cuda":
        return main_cuda(args)
    with tempfile.TemporaryDirectory() as tmp:
        rows, rel, ours = bench_cpu(args, tmp)
    gflop = ours["results"][0]["nominal_gflop"]
    best_torch = min(r["median_ms"] for r in rows if r["name"].startswith("PyTorch"))
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "threads": args.threads,
            "size": args.size, "runs": args.runs, "warmup": args.warmup, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "commit": commit(), "parity_max_rel": rel,
            "weights": args.weights or "seeded random ResNet-101 (tests/dlref.py), identical for both"}
    print(f"## CPU, {args.size}x{args.size}, batch 1, fp32, {args.threads} thread(s)\n")
    for k in ["date", "cpu", "torch", "torchvision", "commit", "weights"]:
        print(f"- {k}: {meta[k]}")
    print(f"- {args.warmup} warm-up + {args.runs} timed runs each; logits checked first: max rel {rel:.1e}\n")
    print("| implementation | median ms | p10 ms | p90 ms | GFLOP/s (nominal) | vs best PyTorch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['median_ms']:.0f} | {r['p10_ms']:.0f} | {r['p90_ms']:.0f} | "
              f"{gflop / r['median_ms'] * 1e3:.1f} | {best_torch / r['median_ms']:.2f}x |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        name = os.path.join(args.out, f"cpu_{args.size}_t{args.threads}_{meta['date']}_{meta['commit']}.json")
        with open(name, "w") as f:
            json.dump({"meta": meta, "rows": rows, "deeplab": ours}, f, indent=1)
        print(f"\n(JSON: {os.path.relpath(name, ROOT)})")


def main_cuda(args):
    if args.runs == 5:
        args.runs = 50  # GPU runs are short: more of them
    if args.warmup == 1:
        args.warmup = 10
    with tempfile.TemporaryDirectory() as tmp:
        rows, rel, ours, compile_s, parity = bench_cuda(args, tmp)
    gflop = ours["results"][0]["nominal_gflop"] / ours["results"][0]["batch"]
    meta = {"date": datetime.date.today().isoformat(), "gpu": torch.cuda.get_device_name(0),
            "driver": subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True).stdout.strip(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "commit": commit(), "size": args.size, "runs": args.runs,
            "warmup": args.warmup, "parity_max_rel": rel, "parity": parity, "compile_seconds": compile_s,
            "weights": args.weights or "seeded random ResNet-101 (tests/dlref.py), identical for both"}
    print(f"## GPU, {args.size}x{args.size}, same run\n")
    for k in ["date", "gpu", "driver", "cuda", "cudnn", "torch", "torchvision", "commit", "weights"]:
        print(f"- {k}: {meta[k]}")
    print(f"- {args.warmup} warm-up + {args.runs} timed runs each (CUDA events, median); deeplab vs B0 logits: "
          f"max rel {rel:.1e}; rate = nominal {gflop:.1f} GFLOP per image / median\n")
    print("| implementation | batch | median ms | p10 ms | p90 ms | images/s | TFLOP/s (nominal) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['batch']} | {r['median_ms']:.3f} | {r['p10_ms']:.3f} | {r['p90_ms']:.3f} | "
              f"{r['batch'] / r['median_ms'] * 1e3:.1f} | {gflop * r['batch'] / r['median_ms']:.1f} |")
    for k, v in compile_s.items():
        print(f"- {k}: " + ("not run (time budget)" if v is None else f"{v:.0f} s to compile and autotune"))
    verdict = judge(rows, args.batch) if args.verdict else None
    meta["verdict"] = verdict
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        name = os.path.join(args.out, f"gpu_{args.size}_{meta['date']}_{meta['commit']}.json")
        with open(name, "w") as f:
            json.dump({"meta": meta, "rows": rows, "deeplab": ours}, f, indent=1)
        print(f"\n(JSON: {os.path.relpath(name, ROOT)})")


if __name__ == "__main__":
    main()
