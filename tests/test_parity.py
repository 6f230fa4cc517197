"""test_parity.py - bin/deeplab against torchvision, end to end, at the image's own size.

For each case a seeded random torchvision model is saved the way users get weights (torch.save
in the zip or the legacy format, or a safetensors file written from the state dict), converted
with `deeplab convert`, and run by both on the same PNGs with --size 0. Checks:
  - logits: max |ours - torchvision| / max |torchvision| <= 1e-4
  - arg-max: equal on every pixel whose top-two margin is above 1e-3 x max |logit|
  - `deeplab info`: depth, classes and parameter count equal torchvision's
  - the class-map PNG holds the arg-max of our logits; rmbg's alpha is 255 x (1 - p(background))
    of torchvision's logits to within one level, and its colours are the input's
  - once, the fast CPU path (default) against the plain-C reference path (--reference)
Under `make test SANITIZE=1` the 131x97 size is left out (every case, format and the other sizes,
1x1 and 5x3 included, stay: the same code paths, a third of the time).
Runs on the CPU (--device cpu); test_parity_cuda.py runs the same checks with device="cuda".
"""
import os
import sys

import numpy as np
import torch
from PIL import Image

import dlref

REL_TOL = 1e-4
CASES = [
    # arch, classes, weights file format, image sizes (w, h)
    ("resnet101", 21, "zip", [(47, 33), (64, 64), (131, 97)]),
    ("resnet101", 21, "legacy", [(64, 64)]),
    ("resnet50", 21, "legacy", [(47, 33), (131, 97), (1, 1), (5, 3)]),
    ("resnet50", 7, "zip", [(64, 64), (131, 97)]),
    ("resnet101", 2, "safetensors", [(47, 33)]),
    ("resnet50", 21, "zip-f16", [(64, 64)]),          # deeplab convert --dtype f16
    ("resnet50", 4, "safetensors-bf16", [(47, 33)]),  # a BF16 file written from the state dict
]


def rounded(model, dtype):
    """The model with every floating tensor of its state dict rounded to dtype and back: what
    a file stored in that dtype holds, for the reference to run with."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(dtype).float())
    return model

expect = dlref.expect


def weights_file(model, fmt, stem):
    """Saves the model's state dict as fmt and returns a safetensors path for bin/deeplab."""
    sd = model.state_dict()
    st = os.path.join(dlref.TMP, stem + ".safetensors")
    if fmt == "safetensors":  # as safetensors.torch.save_file would: every entry, aux head too
        dlref.save_safetensors(st, sd)
        return st
    if fmt == "safetensors-bf16":
        dlref.save_safetensors(st, {k: v.bfloat16() if v.is_floating_point() else v for k, v in sd.items()})
        rounded(model, torch.bfloat16)
        return st
    pth = os.path.join(dlref.TMP, stem + ".pth")
    torch.save(sd, pth, _use_new_zipfile_serialization=(fmt != "legacy"))
    if fmt == "zip-f16":
        dlref.run(["convert", pth, st, "--dtype", "f16"])
        rounded(model, torch.float16)
    else:
        dlref.run(["convert", pth, st])
    return st


def check_info(model, st, arch, classes, fmt, label):
    out = dlref.run(["info", st]).stdout
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_classifier"))
    depth = arch.replace("resnet", "")
    dtype = {"zip-f16": "F16", "safetensors-bf16": "BF16"}.get(fmt, "F32")
    expect(f"ResNet{depth}" in out and f"classes:       {classes}" in out and f"parameters:    {params} " in out
           and f"dtype:         {dtype}" in out,
           f"{label}: info reports ResNet{depth}, {classes} classes, {params} parameters, {dtype}")


def check_image(model, st, w, h, seed, label, device="cpu", rmbg=True):
    """The checks above for one image on device; returns the max rel error against torchvision.
    rmbg=False leaves out the rmbg run (test_parity_cuda: rmbg's post-processing is CPU code, so
    on the GPU one size per case shows it)."""
    img = dlref.photo(w, h, seed)
    png = os.path.join(dlref.TMP, f"in_{w}x{h}_{seed}.png")
    img.save(png)
    ref = dlref.reference_logits(model, dlref.to_input(img))

    npy, seg = os.path.join(dlref.TMP, "logits.npy"), os.path.join(dlref.TMP, "seg.png")
    dlref.run(["segment", "-w", st, "--size", "0", "--device", device, "--save-logits", npy, "-o", seg, png])
    ours = np.load(npy)
    if ours.shape != ref.shape:
        expect(False, f"{label} {w}x{h}: logits shape {ours.shape}, torchvision {ref.shape}")
        return None
    rel, differ, decided, total = dlref.compare_logits(ours, ref)
    expect(rel <= REL_TOL, f"{label} {w}x{h}: max rel error {rel:.2e} (tolerance {REL_TOL:g})")
    expect(differ == 0, f"{label} {w}x{h}: arg-max differs on {differ} of {decided} decided pixels "
                        f"({total - decided} with a margin under 1e-3 not compared)")

    if seed == 0:  # the plain-C reference path on the same input: the two paths agree
        npy_ref = os.path.join(dlref.TMP, "logits_ref.npy")
        dlref.run(["segment", "-w", st, "--size", "0", "--device", "cpu", "--reference", "--save-logits", npy_ref,
                   "-o", os.path.join(dlref.TMP, "seg_ref.png"), png])
        rel_paths, _, _, _ = dlref.compare_logits(ours, np.load(npy_ref))
        path = "fast path" if device == "cpu" else device
        expect(rel_paths <= REL_TOL, f"{label} {w}x{h}: {path} vs --reference path max rel {rel_paths:.2e}")

    labels = np.array(Image.open(seg))
    expect(Image.open(seg).mode == "P" and (labels == ours[0].argmax(0)).all(),
           f"{label} {w}x{h}: class-map PNG is the arg-max of the logits")

    if not rmbg:
        return rel
    cut = os.path.join(dlref.TMP, "cut.png")
    dlref.run(["rmbg", "-w", st, "--size", "0", "--device", device, "--refine", "none", "-o", cut, png])
    rgba = np.array(Image.open(cut))
    p = torch.softmax(torch.from_numpy(ref[0]).double(), 0)[0].numpy()
    want = np.clip(np.rint(255 * (1 - p)), 0, 255)
    err = np.abs(rgba[..., 3].astype(int) - want).max()
    expect(rgba.shape == (h, w, 4) and err <= 1 and (rgba[..., :3] == np.array(img)).all(),
           f"{label} {w}x{h}: rmbg alpha within {err} level(s) of 255 x (1 - p(background)), colours kept")
    return rel


def main():
    for i, (arch, classes, fmt, sizes) in enumerate(CASES):
        label = f"{arch}/{classes} classes/{fmt}"
        model = dlref.make_model(arch, classes, seed=i)
        st = weights_file(model, fmt, f"case{i}")
        check_info(model, st, arch, classes, fmt, label)
        for j, (w, h) in enumerate(sizes):
            if dlref.SANITIZED and (w, h) == (131, 97):
                continue
            check_image(model, st, w, h, seed=100 * i + j, label=label)
    return dlref.summary("parity checks")


if __name__ == "__main__":
    sys.exit(main())
