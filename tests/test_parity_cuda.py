"""test_parity_cuda.py - the GPU path (--device cuda) against torchvision and against the CPU.

The cases and checks of test_parity.py, run with --device cuda (logits within 1e-4 of torchvision,
arg-max equal where the top-two margin is not tiny, class-map PNG; rmbg alpha at each case's
first size), and:
  - for every image, the GPU's logits against the CPU's (fast path): max rel error <= 1e-4
  - for every image, a second run under another schedule gives the same logits bit for bit (on the
    emulated GPU DEEPLAB_EMU_SEED draws another order of threads and blocks, so a race between
    threads shows as a difference; on a GPU it is a second run)
  - rmbg --device cuda end to end, with the edge refinement on the GPU, against rmbg --device cpu
  - one process, several forward passes (tests/tool_forward): batch 2, changing sizes and back,
    so that the device plan is made, re-made and reused; every output against the CPU's
  - DEEPLAB_CUDA_SYNC=1 (a synchronisation after every layer) gives the same logits, bit for bit
  - the per-layer profile on the GPU (deeplab bench --layers) runs
  - --device auto picks the GPU; at 520x520 (ResNet-101, batch 1, fp32) -v prints the GPU memory
    the model holds, under 1 GB, and the logits agree with the CPU's
On the emulated GPU (DL_TEST_EMU=1): the cases that differ only in the weights file are left out
(every architecture and class count stays), so is the 131x97 size (8 times 47x33's pixels, a third
of the test's time there; the multi-tile grids it would exercise are test_cuda_layers' 65x65 and
520x520 shapes, and test_parity runs 131x97 on the CPU), and instead of the 520x520 run (a minute of CPU
there, its layers' shapes are test_cuda_layers') it checks that --device auto takes the CPU. With
DL_TEST_QUICK=1 too (make test SANITIZE=1): one ResNet-101 and one ResNet-50 case at small odd
sizes, tool_forward with batch 2 and a re-plan, the refined rmbg, nothing more.
Skips (exit 77) when `nvidia-smi -L` fails or deeplab finds no usable GPU; with DL_TEST_EMU=1
(tests/run.sh, for the emulated GPU) only the latter. With DEEPLAB_RESULTS set to a path, writes
the numbers there as JSON (tools/gpu-check.sh records them).
"""
import json
import os
import re
import subprocess
import sys

import dlref
import numpy as np
from PIL import Image
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


def same_under_another_schedule(st, png, first, what):
    """segment again with DEEPLAB_EMU_SEED + 1: the logits must be those of first, bit for bit."""
    again = os.path.join(dlref.TMP, "logits_schedule2.npy")
    env = dict(os.environ, DEEPLAB_EMU_SEED=str(int(os.environ.get("DEEPLAB_EMU_SEED", "1")) + 1))
    p = subprocess.run([dlref.DEEPLAB, "segment", "-w", st, "--size", "0", "--device", "cuda", "--save-logits", again,
                        "-o", os.path.join(dlref.TMP, "seg_schedule2.png"), png], capture_output=True, text=True,
                       env=env)
    same = p.returncode == 0 and np.array_equal(np.load(first), np.load(again))
    expect(same, f"{what}: another schedule gives the same logits, bit for bit"
                 + ("" if p.returncode == 0 else f" (exit {p.returncode}: {p.stderr.strip()})"))


QUICK = os.environ.get("DL_TEST_QUICK", "") not in ("", "0")


QUICK_CASES = {0: [(47, 33)], 2: [(5, 3)]}  # ResNet-101 and ResNet-50 under DL_TEST_QUICK
# On the emulated GPU the cases whose difference is only the weights file (legacy, f16, bf16: the
# loader's business, which test_parity checks on the CPU; the device gets fp32 either way) are
# left out: every architecture, class count and size remains.
EMULATED_CASES = (0, 2, 3, 4)


def parity_cases():
    for i, (arch, classes, fmt, sizes) in enumerate(tp.CASES):
        if QUICK:
            if i not in QUICK_CASES:
                continue
            sizes = QUICK_CASES[i]
        elif dlref.EMULATED:
            if i not in EMULATED_CASES:
                continue
            sizes = [s for s in sizes if s != (131, 97)]
        label = f"{arch}/{classes} classes/{fmt}"
        model = dlref.make_model(arch, classes, seed=i)
        st = tp.weights_file(model, fmt, f"case{i}")
        for j, (w, h) in enumerate(sizes):
            seed = 100 * i + j
            rel = tp.check_image(model, st, w, h, seed=seed, label=label, device="cuda", rmbg=j == 0)
            gpu = os.path.join(dlref.TMP, "logits.npy")  # check_image's GPU logits
            cpu = os.path.join(dlref.TMP, "logits_cpu.npy")
            png = os.path.join(dlref.TMP, f"in_{w}x{h}_{seed}.png")
            dlref.run(["segment", "-w", st, "--size", "0", "--device", "cpu", "--save-logits", cpu,
                       "-o", os.path.join(dlref.TMP, "seg_cpu.png"), png])
            rel_cpu = compare_npy(gpu, cpu, f"{label} {w}x{h}: cuda vs cpu logits")
            same_under_another_schedule(st, png, gpu, f"{label} {w}x{h}")
            results["images"].append({"case": label, "w": w, "h": h, "rel_torchvision": rel, "rel_cpu": rel_cpu})
        if i == 0:
            engine_checks(st)


def engine_checks(st):
    """Several forward passes in one process, the per-layer sync, the profile."""
    tool = os.path.join(os.environ.get("BUILD_DIR", "build"), "tests", "tool_forward")
    specs = ["2:47x33", "1:5x3"] if QUICK else ["1:47x33", "2:47x33", "1:64x64", "1:47x33", "3:5x3"]
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
    if not QUICK:
        per_layer_checks(st, png)
    rmbg_end_to_end(st, png)


def per_layer_checks(st, png):
    """DEEPLAB_CUDA_SYNC=1 gives the same logits; the per-layer profile runs."""
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
    if dlref.EMULATED:
        expect("emulated GPU" in p.stdout, "deeplab bench says its times are the emulated GPU's")


def rmbg_end_to_end(st, png):
    """rmbg on the GPU: the network and the edge refinement (guided, the default) there, against
    the same command on the CPU."""
    cuts = {}
    for dev in ("cuda", "cpu"):
        cuts[dev] = os.path.join(dlref.TMP, f"rmbg_{dev}.png")
        q = subprocess.run([dlref.DEEPLAB, "rmbg", "-v", "-w", st, "--size", "0", "--device", dev, "-o", cuts[dev],
                            png], capture_output=True, text=True)
        ran = q.returncode == 0 and f"device:   {dev}" in q.stderr
        expect(ran, f"rmbg --device {dev} (refined) runs there" + ("" if ran else f" (exit {q.returncode}: "
                                                                                 f"{q.stderr.strip()[-300:]})"))
    if all(os.path.exists(c) for c in cuts.values()):
        a = np.array(Image.open(cuts["cuda"])).astype(int)
        b = np.array(Image.open(cuts["cpu"])).astype(int)
        worst = np.abs(a - b).max() if a.shape == b.shape else 255
        expect(a.shape == b.shape and worst <= 2, f"rmbg --device cuda vs cpu, refined cut-out: worst difference "
                                                  f"{worst} level(s) of 255 (at most 2)")


def check_auto_on_emulated():
    """--device auto never takes the emulated GPU (the first case's weights and photo)."""
    st, png = os.path.join(dlref.TMP, "case0.safetensors"), os.path.join(dlref.TMP, "in_47x33_0.png")
    p = dlref.run(["segment", "-v", "-w", st, "--device", "auto", "--size", "0", "-o",
                   os.path.join(dlref.TMP, "seg_auto.png"), png])
    expect("device:   cpu" in p.stderr, "--device auto runs on the CPU when the GPU is the emulated one")


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
    if dlref.EMULATED:
        # 520x520 is a minute of CPU on the emulated GPU (three under load); its layer shapes
        # are in test_cuda_layers. The memory it takes on a GPU is checked on one.
        check_auto_on_emulated()
    else:
        check_520()
    rels = [r["rel_torchvision"] for r in results["images"] if r["rel_torchvision"] is not None]
    rels_cpu = [r["rel_cpu"] for r in results["images"] if r["rel_cpu"] is not None]
    results["max_rel_torchvision"] = max(rels) if rels else None
    results["max_rel_cpu"] = max(rels_cpu) if rels_cpu else None
    results["failures"] = dlref.failures
    memory = "" if dlref.EMULATED else f"; 520x520 GPU memory {results.get('gpu_memory_mb_520')} MB"
    print(f"worst: {results['max_rel_torchvision']} vs torchvision, {results['max_rel_cpu']} vs the CPU, "
          f"over {len(rels)} images{memory}")
    if os.environ.get("DEEPLAB_RESULTS"):
        with open(os.environ["DEEPLAB_RESULTS"], "w") as f:
            json.dump(results, f, indent=2)
    return dlref.summary("CUDA parity checks")


if __name__ == "__main__":
    sys.exit(main())
