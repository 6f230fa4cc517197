"""test_parity_cuda.py - the GPU path (--device cuda) against torchvision and against the CPU.

The cases and checks of test_parity.py, run with --device cuda (logits within 1e-4 of torchvision,
arg-max equal where the top-two margin is not tiny, class-map PNG, rmbg alpha), and:
  - for every image, the GPU's logits against the CPU's (fast path): max rel error <= 1e-4
  - one process, several forward passes (tests/tool_forward): batch 2, changing sizes and back,
    so that the device plan is made, re-made and reused; every output against the CPU's
  - DEEPLAB_CUDA_SYNC=1 (a synchronisation after every layer) gives the same logits, bit for bit
  - the per-layer profile on the GPU (deeplab bench --layers) runs
  - --device auto picks the GPU; at 520x520 (ResNet-101, batch 1, fp32) -v prints the GPU memory
    the model holds, under 1 GB, and the logits agree with the CPU's
Skips (exit 77) when `nvidia-smi -L` fails or deeplab finds no usable GPU. With DEEPLAB_RESULTS set
to a path, writes the numbers there as JSON (tools/gpu-check.sh records them).
"""
import json
import os
import re
import subprocess
import sys

import dlref
import numpy as np
import test_parity as tp

REL_TOL = tp.REL_TOL
expect = tp.expect
results = {"images": []}


def skip_reason():
    """None when a usable GPU is there, else why not."""
    return dlref.gpu_skip_reason(["bench", "--device", "cuda", "--size", "16", "--runs", "1", "--warmup", "0"])


def compare_npy(a_path, b_path, what):
    a, b = np.load(a_path), np.load(b_path)
    if a.shape != b.shape:
        expect(False, f"{what}: shapes {a.shape} and {b.shape}")
        return None
    rel, _, _, _ = dlref.compare_logits(a, b)
    expect(rel <= REL_TOL, f"{what}: max rel error {rel:.2e}")
    return rel


def parity_cases():
    for i, (arch, classes, fmt, sizes) in enumerate(tp.CASES):
        label = f"{arch}/{classes} classes/{fmt}"
        model = dlref.make_model(arch, classes, seed=i)
        st = tp.weights_file(model, fmt, f"case{i}")
        for j, (w, h) in enumerate(sizes):
            seed = 100 * i + j
            rel = tp.check_image(model, st, w, h, seed=seed, label=label, device="cuda")
            gpu = os.path.join(dlref.TMP, "logits.npy")  # check_image's GPU logits
            cpu = os.path.join(dlref.TMP, "logits_cpu.npy")
            png = os.path.join(dlref.TMP, f"in_{w}x{h}_{seed}.png")
            dlref.run(["segment", "-w", st, "--size", "0", "--device", "cpu", "--save-logits", cpu,
                       "-o", os.path.join(dlref.TMP, "seg_cpu.png"), png])
            rel_cpu = compare_npy(gpu, cpu, f"{label} {w}x{h}: cuda vs cpu logits")
            results["images"].append({"case": label, "w": w, "h": h, "rel_torchvision": rel, "rel_cpu": rel_cpu})
        if i == 0:
            engine_checks(st)


def engine_checks(st):
    """Several forward passes in one process, the per-layer sync, the profile."""
    tool = os.path.join(os.environ.get("BUILD_DIR", "build"), "tests", "tool_forward")
    specs = ["1:47x33", "2:47x33", "1:64x64", "1:47x33", "3:5x3"]
    outs = {}
    for dev in ("cpu", "cuda"):
        prefix = os.path.join(dlref.TMP, f"fwd_{dev}_")
        p = subprocess.run([tool, st, dev, prefix] + specs, capture_output=True, text=True)
        expect(p.returncode == 0, f"tool_forward on {dev}: {' '.join(specs)} (exit {p.returncode}) {p.stderr.strip()}")
        outs[dev] = prefix
    worst = 0.0
    for k, spec in enumerate(specs):
        rel = compare_npy(f"{outs['cuda']}{k}.npy", f"{outs['cpu']}{k}.npy",
                          f"one process, forward {k + 1} of {len(specs)} ({spec}): cuda vs cpu")
        worst = max(worst, rel or 0.0)
    results["plan_reuse_rel_cpu"] = worst

    png = os.path.join(dlref.TMP, "in_47x33_0.png")
    a, b = os.path.join(dlref.TMP, "sync0.npy"), os.path.join(dlref.TMP, "sync1.npy")
    seg = os.path.join(dlref.TMP, "seg_sync.png")
    dlref.run(["segment", "-w", st, "--size", "0", "--device", "cuda", "--save-logits", a, "-o", seg, png])
    env = dict(os.environ, DEEPLAB_CUDA_SYNC="1")
    p = subprocess.run([dlref.DEEPLAB, "segment", "-w", st, "--size", "0", "--device", "cuda", "--save-logits", b,
                        "-o", seg, png], capture_output=True, text=True, env=env)
    expect(p.returncode == 0 and np.array_equal(np.load(a), np.load(b)),
           "DEEPLAB_CUDA_SYNC=1 gives the same logits, bit for bit")

    p = dlref.run(["bench", "-w", st, "--device", "cuda", "--size", "47x33", "--runs", "2", "--warmup", "1",
                   "--layers"], check=False)
    expect(p.returncode == 0 and "backbone.layer4.2.conv3" in p.stdout,
           f"deeplab bench --device cuda --layers prints a per-layer table (exit {p.returncode})")


def check_520():
    """--device auto, -v and the GPU memory at the default size."""
    model = dlref.make_model("resnet101", 21, seed=11)
    st = os.path.join(dlref.TMP, "r101.safetensors")
    dlref.save_safetensors(st, model.state_dict())
    png = os.path.join(dlref.TMP, "photo520.png")
    dlref.photo(520, 520, seed=12).save(png)
    gpu, cpu = os.path.join(dlref.TMP, "l520_gpu.npy"), os.path.join(dlref.TMP, "l520_cpu.npy")
    seg = os.path.join(dlref.TMP, "seg520.png")
    p = dlref.run(["segment", "-v", "-w", st, "--device", "auto", "--save-logits", gpu, "-o", seg, png])
    print(p.stderr, end="")
    expect("device:   cuda" in p.stderr, "--device auto runs on the GPU and -v says so")
    mem = re.search(r"gpu memory: ([0-9]+) MB", p.stderr)
    mb = int(mem.group(1)) if mem else None
    results["gpu_memory_mb_520"] = mb
    expect(mb is not None and mb < 1024, f"520x520, ResNet-101, batch 1: -v prints the GPU memory, under 1024 MB "
                                         f"({mb} MB)")
    dlref.run(["segment", "-w", st, "--device", "cpu", "--save-logits", cpu, "-o", seg, png])
    results["rel_cpu_520"] = compare_npy(gpu, cpu, "520x520 ResNet-101: cuda vs cpu logits")


def main():
    why = skip_reason()
    if why:
        print(f"SKIP: no CUDA GPU ({why})")
        return 77
    parity_cases()
    check_520()
    rels = [r["rel_torchvision"] for r in results["images"] if r["rel_torchvision"] is not None]
    rels_cpu = [r["rel_cpu"] for r in results["images"] if r["rel_cpu"] is not None]
    results["max_rel_torchvision"] = max(rels) if rels else None
    results["max_rel_cpu"] = max(rels_cpu) if rels_cpu else None
    results["failures"] = dlref.failures
    print(f"worst: {results['max_rel_torchvision']} vs torchvision, {results['max_rel_cpu']} vs the CPU, "
          f"over {len(rels)} images; 520x520 GPU memory {results.get('gpu_memory_mb_520')} MB")
    if os.environ.get("DEEPLAB_RESULTS"):
        with open(os.environ["DEEPLAB_RESULTS"], "w") as f:
            json.dump(results, f, indent=2)
    return dlref.summary("CUDA parity checks")


if __name__ == "__main__":
    sys.exit(main())
