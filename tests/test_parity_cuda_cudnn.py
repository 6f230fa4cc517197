"""test_parity_cuda_cudnn.py - the cudnn backend (convolutions through cuDNN and cuBLAS) against
torchvision and against the CPU.

The torchvision cases of test_parity.py (ResNet-101 and -50, 21 and other class counts, every file
format, sizes from 1x1 to 131x97), run through tests/tool_backend (the commands have no backend
option), each case's images in one process (the plan re-made at every size, the algorithm
searches kept):
  - fp32 (cuDNN's FMA math, cuBLAS without tensor cores): logits within 1e-4 of torchvision
    (max |ours - ref| / max |ref|), arg-max equal where the top-two margin is above 1e-3 x max
    |logit|: the native backend's bound
  - tf32 (tensor cores; inputs rounded to 10 mantissa bits): within 1e-2 of torchvision, arg-max
    equal where the margin is above 2e-2 x max |logit|. That is the TF32 expectation, not an fp32
    bound: the worst error is printed and recorded
  - one process, batch 2, changing sizes and back: cudnn fp32 against the CPU within 1e-4
  - DEEPLAB_CUDA_SYNC=1 (a synchronisation after every layer) runs and agrees within 1e-4
  - deeplab bench --backend native,cudnn --precision fp32,tf32 --layers: four rows (native fp32
    and tf32, the tensor-core path, beside cudnn's) and the per-layer tables
  - 520x520 ResNet-101: fp32 against the CPU within 1e-4, tf32 within 1e-2; device memory printed
Skips (exit 77) when `nvidia-smi -L` fails, or deeplab finds no usable GPU or no cuDNN. With
DEEPLAB_RESULTS_CUDNN set to a path, writes the numbers there as JSON (tools/gpu-check.sh).
"""
import json
import os
import re
import subprocess
import sys

import dlref
import numpy as np
import test_parity as tp

REL_TOL = tp.REL_TOL  # fp32: 1e-4, as the native backend
TF32_TOL = 1e-2
TF32_TINY = 2e-2      # arg-max compared where the top-two margin is above this x max |logit|
TOOL = os.path.join(os.environ.get("BUILD_DIR", "build"), "tests", "tool_backend")
expect = tp.expect
results = {"images": []}


def skip_reason():
    """None when a usable GPU and cuDNN are there, else why not."""
    return dlref.gpu_skip_reason(["bench", "--backend", "cudnn", "--size", "16", "--runs", "1", "--warmup", "0"])


def run_tool(st, backend, precision, prefix, inputs, env=None):
    """tool_backend on inputs: (the logits' paths, its output), or (None, output) after a failed
    check when it failed."""
    p = subprocess.run([TOOL, st, backend, precision, prefix] + inputs, capture_output=True, text=True, env=env)
    want = {"cpu": "path: ", "cuda": "path: cuda\n", "cudnn": "path: cudnn\n"}[backend]
    if p.returncode != 0 or want not in p.stdout:
        expect(False, f"tool_backend {backend} {precision} {' '.join(os.path.basename(i) for i in inputs)}: "
                      f"exit {p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
        return None, p.stdout
    return [f"{prefix}{k}.npy" for k in range(len(inputs))], p.stdout


def compare(ours, ref, tol, tiny, what):
    if ours.shape != ref.shape:
        expect(False, f"{what}: logits shape {ours.shape}, reference {ref.shape}")
        return None
    rel, differ, decided, total = dlref.compare_logits(ours, ref, tiny)
    expect(rel <= tol, f"{what}: max rel error {rel:.2e} (tolerance {tol:g})")
    expect(differ == 0, f"{what}: arg-max differs on {differ} of {decided} decided pixels "
                        f"({total - decided} with a margin under {tiny:g} not compared)")
    return rel


def parity_cases():
    for i, (arch, classes, fmt, sizes) in enumerate(tp.CASES):
        label = f"{arch}/{classes} classes/{fmt}"
        model = dlref.make_model(arch, classes, seed=i)
        st = tp.weights_file(model, fmt, f"case{i}")  # (rounds the model to the file's dtype)
        pngs, refs = [], []
        for j, (w, h) in enumerate(sizes):
            img = dlref.photo(w, h, 100 * i + j)
            pngs.append(os.path.join(dlref.TMP, f"in_{w}x{h}_{100 * i + j}.png"))
            img.save(pngs[-1])
            refs.append(dlref.reference_logits(model, dlref.to_input(img)))
        for precision, tol, tiny in (("fp32", REL_TOL, 1e-3), ("tf32", TF32_TOL, TF32_TINY)):
            npys, _ = run_tool(st, "cudnn", precision, os.path.join(dlref.TMP, f"case{i}_{precision}_"), pngs)
            for j, (w, h) in enumerate(sizes):
                rel = compare(np.load(npys[j]), refs[j], tol, tiny, f"{label} {w}x{h} cudnn {precision}") \
                    if npys else None
                results["images"].append({"case": label, "w": w, "h": h, "precision": precision,
                                          "rel_torchvision": rel})
        if i == 0:
            engine_checks(st)


def engine_checks(st):
    """Several forward passes in one process, the per-layer sync, bench with every combination."""
    specs = ["1:47x33", "2:47x33", "1:64x64", "1:47x33", "3:5x3"]
    cpu, _ = run_tool(st, "cpu", "fp32", os.path.join(dlref.TMP, "fwd_cpu_"), specs)
    for precision, tol in (("fp32", REL_TOL), ("tf32", TF32_TOL)):
        ours, _ = run_tool(st, "cudnn", precision, os.path.join(dlref.TMP, f"fwd_cudnn_{precision}_"), specs)
        worst = None
        for k, spec in enumerate(specs):
            if not (cpu and ours):
                break
            a, b = np.load(ours[k]), np.load(cpu[k])
            rel, _, _, _ = dlref.compare_logits(a, b) if a.shape == b.shape else (float("inf"), 0, 0, 0)
            expect(rel <= tol, f"one process, forward {k + 1} of {len(specs)} ({spec}): cudnn {precision} vs cpu "
                               f"max rel {rel:.2e} (tolerance {tol:g})")
            worst = rel if worst is None else max(worst, rel)
        results[f"plan_reuse_rel_cpu_{precision}"] = worst

    env = dict(os.environ, DEEPLAB_CUDA_SYNC="1")
    sync, _ = run_tool(st, "cudnn", "fp32", os.path.join(dlref.TMP, "sync_"), specs[:1], env=env)
    if sync and cpu:
        rel, _, _, _ = dlref.compare_logits(np.load(sync[0]), np.load(cpu[0]))
        expect(rel <= REL_TOL, f"DEEPLAB_CUDA_SYNC=1: cudnn fp32 vs cpu max rel {rel:.2e}")

    p = dlref.run(["bench", "-w", st, "--device", "cuda", "--backend", "native,cudnn", "--precision", "fp32,tf32",
                   "--size", "47x33", "--runs", "2", "--warmup", "1", "--layers"], check=False)
    rows = [r for r in ("| native | cuda | fp32 |", "| native | cuda | tf32 |", "| cudnn | cudnn | fp32 |",
                        "| cudnn | cudnn | tf32 |") if r in p.stdout]
    expect(p.returncode == 0 and len(rows) == 4 and "### layers: cudnn tf32" in p.stdout
           and "backbone.layer4.2.conv3" in p.stdout,
           f"deeplab bench --backend native,cudnn --precision fp32,tf32 --layers: {len(rows)} of 4 rows, "
           f"per-layer tables (exit {p.returncode}) {p.stderr.strip()[-300:]}")
    print(p.stdout)


def check_520():
    """ResNet-101 at the default size: cudnn against the CPU, and the device memory."""
    model = dlref.make_model("resnet101", 21, seed=11)
    st = os.path.join(dlref.TMP, "r101.safetensors")
    dlref.save_safetensors(st, model.state_dict())
    png = os.path.join(dlref.TMP, "photo520.png")
    dlref.photo(520, 520, seed=12).save(png)
    cpu, _ = run_tool(st, "cpu", "fp32", os.path.join(dlref.TMP, "l520_cpu_"), [png])
    for precision, tol in (("fp32", REL_TOL), ("tf32", TF32_TOL)):
        ours, out = run_tool(st, "cudnn", precision, os.path.join(dlref.TMP, f"l520_{precision}_"), [png])
        if not (ours and cpu):
            continue
        mem = re.search(r"device bytes: ([0-9]+)", out)
        mb = int(mem.group(1)) / 2**20 if mem else None
        results[f"gpu_memory_mb_520_{precision}"] = mb
        rel, _, _, _ = dlref.compare_logits(np.load(ours[0]), np.load(cpu[0]))
        results[f"rel_cpu_520_{precision}"] = rel
        expect(rel <= tol, f"520x520 ResNet-101: cudnn {precision} vs cpu max rel {rel:.2e} (tolerance {tol:g}); "
                           f"device memory {mb if mb is None else round(mb)} MB")


def main():
    why = skip_reason()
    if why:
        print(f"SKIP: no CUDA GPU or no cuDNN ({why})")
        return 77
    parity_cases()
    check_520()
    for precision in ("fp32", "tf32"):
        rels = [r["rel_torchvision"] for r in results["images"]
                if r["precision"] == precision and r["rel_torchvision"] is not None]
        results[f"max_rel_torchvision_{precision}"] = max(rels) if rels else None
        print(f"cudnn {precision}: worst {results[f'max_rel_torchvision_{precision}']} vs torchvision over "
              f"{len(rels)} images; 520x520 vs cpu {results.get(f'rel_cpu_520_{precision}')}, device memory "
              f"{results.get(f'gpu_memory_mb_520_{precision}')} MB")
    results["failures"] = dlref.failures
    if os.environ.get("DEEPLAB_RESULTS_CUDNN"):
        with open(os.environ["DEEPLAB_RESULTS_CUDNN"], "w") as f:
            json.dump(results, f, indent=2)
    return dlref.summary("cudnn parity checks")


if __name__ == "__main__":
    sys.exit(main())
