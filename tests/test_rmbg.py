#!/usr/bin/env python3
"""test_rmbg.py - every option of `deeplab rmbg` against an independent computation.

A seeded random ResNet-50 (tests/dlref.py; its classifier scaled by 20 so that class masses span
0 to 1 as a trained model's do) runs on a small photo at --size 0 (and once at a smaller --size). Our logits (segment --save-logits, checked once against torchvision) are the
input of numpy versions of everything rmbg does after the network, written here from the
definitions in engine/deeplab.h and engine/guided_filter.h: softmax mass of the chosen classes,
bilinear upsampling (torch.nn.functional.interpolate), the two-pass confidence-weighted guided
filter, objects (a breadth-first flood fill), blur-fusion decontamination, compositing, crops,
the overlay's tint and legend. Each option's check fails if the option stops working:

  --classes        alpha = 255 x softmax mass of those classes (names and numbers; unknown: 64)
  --refine         none: the upsampled map; guided (default): the numpy filter within 2 levels;
                   --refine-radius / --refine-eps: the filter with those values, and not the default
  --threshold      only 0 and 255, = (soft alpha >= T) away from the rounding boundary
  --keep-at        exactly one object (alpha >= 50%, 8-connected) left, the one under the point,
                   unchanged; a point on nothing warns and keeps nothing
  --largest        exactly one object left: the largest
  --keep-mask, --erase-mask   painted pixels 255 / 0, the rest as the numpy filter with hints
  --format         mask = the alpha; labels = arg-max where alpha >= 50%; overlay = tint + legend
                   swatches in share order
  --bg-color, --bg-image      "over" compositing (opaque: RGB), Pillow's resize for the picture
  --crop[=M]       the size and pixels of the alpha > 0 box (plus M)
  --decontaminate  the numpy blur fusion within 2 levels on semi-transparent pixels, others kept
  JPEG out         by extension, opaque only (else 64); mask as gray JPEG; --jpeg-quality
  --roi, --megapixels, --scale, --position, --crop-margin, --stroke, CSS colours (what the HTTP
                   API shares with rmbg): against Pillow and numpy on the outputs of simpler options
  -v               the box and the class shares; EXIF orientation 6 in comes out rotated;
                   - / -o - through pipes; --list-classes
Exit 0 = pass, 1 = fail.
"""
import io
import os
import re
import subprocess
import sys
from collections import deque

import numpy as np
import torch
from PIL import Image, ImageOps

import dlref

T = dlref.TMP
expect = dlref.expect


def deeplab(args, **kw):
    return subprocess.run([dlref.DEEPLAB] + [str(a) for a in args], capture_output=True, **kw)


def rmbg(args, name):
    out = os.path.join(T, name)
    p = deeplab(["rmbg", "-w", ST, "--size", "0"] + args + ["-o", out, PHOTO], text=True)
    if p.returncode != 0:
        expect(False, f"rmbg {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()}")
        return None, p.stderr
    return np.array(Image.open(out)), p.stderr


# ------------------------------------------------------------------ numpy references

def softmax(logits):
    z = logits - logits.max(0, keepdims=True)
    e = np.exp(z.astype(np.float64))
    return e / e.sum(0, keepdims=True)


def upsample(m, H, W):
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float64))[None, None]
    return torch.nn.functional.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()


def box_mean(a, R):
    """Mean over (2R+1)^2 windows clipped at the borders, over the last two axes."""
    for axis in (-1, -2):
        n = a.shape[axis]
        c = np.cumsum(a, axis=axis, dtype=np.float64)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        i = np.arange(n)
        lo, hi = np.clip(i - R, 0, n), np.clip(i + R + 1, 0, n)
        shape = [1] * a.ndim
        shape[axis] = n
        a = (np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)) / (hi - lo).reshape(shape)
    return a


def gf_pass(rgb, p, hints, radius, eps, lo, hi):
    """One pass of the weighted fast guided filter (engine/guided_filter.h), in double."""
    H, W = p.shape
    s, R = (1, radius) if radius < 4 else (radius // 4, (radius + radius // 4 // 2) // (radius // 4))
    I = rgb.astype(np.float64) / 255
    v = np.clip(p, 0, 1)
    c = (2 * v - 1) ** 2 + 1 / 64
    if hints is not None:
        v = np.where(hints == 1, 1.0, np.where(hints == 2, 0.0, v))
        c = np.where(hints > 0, 16.0, c)
    cw, ch = -(-W // s), -(-H // s)
    r, g, b = I[..., 0], I[..., 1], I[..., 2]
    M = np.zeros((14, ch, cw))
    for k, f in enumerate([np.ones_like(v), r, g, b, v, r * r, r * g, r * b, g * g, g * b, b * b, r * v, g * v, b * v]):
        pad = np.zeros((ch * s, cw * s))
        pad[:H, :W] = c * f
        M[k] = pad.reshape(ch, s, cw, s).sum(axis=(1, 3))
    M = box_mean(M, R)
    n = M[0]
    mu, mv = M[1:4] / n, M[4] / n
    S = np.empty((ch, cw, 3, 3))
    for (i, j), k in {(0, 0): 5, (0, 1): 6, (0, 2): 7, (1, 1): 8, (1, 2): 9, (2, 2): 10}.items():
        S[..., i, j] = S[..., j, i] = M[k] / n - mu[i] * mu[j] + (eps if i == j else 0)
    cov = np.stack([M[11 + i] / n - mu[i] * mv for i in range(3)], -1)
    a = np.linalg.solve(S, cov[..., None])[..., 0]
    co = np.concatenate([np.moveaxis(a, -1, 0), (mv - (a * np.moveaxis(mu, 0, -1)).sum(-1))[None]], 0)
    co = box_mean(co, R)

    def interp(size, cells):
        t = np.maximum((np.arange(size) + 0.5) / s - 0.5, 0)
        i0 = np.minimum(t.astype(int), cells - 1)
        return i0, np.minimum(i0 + 1, cells - 1), np.minimum(t - i0, 1)
    x0, x1, lx = interp(W, cw)
    y0, y1, ly = interp(H, ch)
    C = (1 - ly)[None, :, None] * ((1 - lx) * co[:, y0][:, :, x0] + lx * co[:, y0][:, :, x1]) + \
        ly[None, :, None] * ((1 - lx) * co[:, y1][:, :, x0] + lx * co[:, y1][:, :, x1])
    q = np.clip((C[0] * r + C[1] * g + C[2] * b + C[3] - lo) / (hi - lo), 0, 1)
    if hints is not None:
        q = np.where(hints == 1, 1.0, np.where(hints == 2, 0.0, q))
    return q


def refine(rgb, p, hints=None, radius=16, eps=1e-3):
    """dl_refine: a pass stretched from [0.25, 0.75], then a pass of radius / 4."""
    first = gf_pass(rgb, p, hints, radius, eps, 0.25, 0.75)
    return gf_pass(rgb, first.astype(np.float32).astype(np.float64), hints, max(1, radius // 4), eps, 0, 1)


def objects(mask):
    """8-connected components of a boolean mask: labels (0 = none) and count, raster order."""
    H, W = mask.shape
    lab = np.zeros((H, W), int)
    n = 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if lab[y0, x0]:
            continue
        n += 1
        lab[y0, x0] = n
        q = deque([(y0, x0)])
        while q:
            y, x = q.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and not lab[yy, xx]:
                        lab[yy, xx] = n
                        q.append((yy, xx))
    return lab, n


def decontaminate(rgb, alpha):
    """Blur fusion (Forte and Pitie 2021), two passes, as dl_decontaminate."""
    I = rgb.astype(np.float64) / 255
    H, W = alpha.shape
    wide = int(np.clip(min(W, H) // 12, 3, 90))
    a = alpha.astype(np.float64)
    F, B = I.copy(), I.copy()
    for R in (wide, max(1, wide // 15)):
        A = box_mean(a, R)
        mf = np.moveaxis(box_mean(np.moveaxis(a[..., None] * F, -1, 0), R), 0, -1)
        mb = np.moveaxis(box_mean(np.moveaxis((1 - a)[..., None] * B, -1, 0), R), 0, -1)
        Fb = np.where(A[..., None] > 1e-6, mf / np.maximum(A, 1e-12)[..., None], F)
        Bb = np.where((1 - A)[..., None] > 1e-6, mb / np.maximum(1 - A, 1e-12)[..., None], B)
        d = I - a[..., None] * Fb - (1 - a)[..., None] * Bb
        F = np.clip(Fb + a[..., None] * d, 0, 1)
        B = np.clip(Bb + (1 - a)[..., None] * d, 0, 1)
    return np.rint(255 * F)


def a8(alpha):
    return np.rint(255 * np.clip(alpha, 0, 1)).astype(int)


def max_diff(a, b):
    return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


# ------------------------------------------------------------------ the checks

def main():
    global ST, PHOTO
    model = dlref.make_model("resnet50", 21, seed=11)
    with torch.no_grad():  # confident, as a trained model is: class masses from near 0 to near 1
        model.classifier[4].weight *= 20
        model.classifier[4].bias *= 20
    ST = os.path.join(T, "model.safetensors")
    dlref.save_safetensors(ST, model.state_dict())
    W, H = 80, 60
    img = dlref.photo(W, H, 3)
    PHOTO = os.path.join(T, "photo.png")
    img.save(PHOTO)
    rgb = np.array(img)

    npy = os.path.join(T, "logits.npy")
    dlref.run(["segment", "-w", ST, "--size", "0", "--save-logits", npy, "-o", os.path.join(T, "seg.png"), PHOTO])
    logits = np.load(npy)[0]
    ref = dlref.reference_logits(model, dlref.to_input(img))[0]
    rel = float(np.abs(logits - ref).max() / np.abs(ref).max())
    expect(rel < 1e-4, f"our logits are torchvision's (max rel error {rel:.1e}): the input of every check below")
    P = softmax(logits)
    labels = P.argmax(0)
    share = np.bincount(labels.ravel(), minlength=21) / labels.size

    # --refine none, --classes
    got, _ = rmbg(["--refine", "none"], "none.png")
    expect(got is not None and max_diff(got[..., 3], a8(1 - P[0])) <= 1 and (got[..., :3] == rgb).all(),
           "--refine none: alpha = 255 x (1 - p(background)), colours kept")
    order = [int(c) for c in np.argsort(-share, kind="stable") if c != 0]
    cls_a, cls_b = order[0], order[1]  # the two classes with the most pixels: the "subject" is cls_a
    name_a, name_b = dlref_names[cls_a], dlref_names[cls_b]
    got, _ = rmbg(["--refine", "none", "--classes", f"{name_a},{name_b}"], "classes.png")
    want = a8(P[cls_a] + P[cls_b])
    expect(got is not None and max_diff(got[..., 3], want) <= 1,
           f"--classes {name_a},{name_b}: alpha = 255 x softmax mass of those classes "
           f"(max diff {max_diff(got[..., 3], want) if got is not None else '-'})")
    got2, _ = rmbg(["--refine", "none", "--classes", f"{cls_a},{cls_b}"], "classes_num.png")
    expect(got is not None and got2 is not None and np.array_equal(got, got2), "--classes by number = by name")
    got3, _ = rmbg(["--refine", "none", "--classes", "background"], "classes_bg.png")
    expect(got3 is not None and max_diff(got3[..., 3], a8(P[0])) <= 1, "--classes background keeps the background")
    p = deeplab(["rmbg", "-w", ST, "--classes", "person,unicorn", "-o", os.path.join(T, "x.png"), PHOTO], text=True)
    expect(p.returncode == 64 and "unicorn" in p.stderr, f"--classes unicorn: exit 64 naming it: {p.stderr.strip()}")
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--classes", "40", "-o", os.path.join(T, "x.png"), PHOTO], text=True)
    expect(p.returncode == 64 and "0 to 20" in p.stderr, f"--classes 40 on a 21-class model: {p.stderr.strip()}")

    # --classes through the upsampling (--size smaller than the photo)
    npy40 = os.path.join(T, "logits40.npy")
    dlref.run(["segment", "-w", ST, "--size", "40", "--save-logits", npy40, "-o", os.path.join(T, "seg40.png"), PHOTO])
    P40 = softmax(np.load(npy40)[0])
    p = deeplab(["rmbg", "-w", ST, "--size", "40", "--refine", "none", "--classes", name_a, "-o",
                 os.path.join(T, "c40.png"), PHOTO], text=True)
    got = np.array(Image.open(os.path.join(T, "c40.png"))) if p.returncode == 0 else None
    want = a8(upsample(P40[cls_a], H, W))
    expect(got is not None and max_diff(got[..., 3], want) <= 1,
           f"--size 40 --classes {name_a}: alpha = the class mass at {P40.shape[2]}x{P40.shape[1]}, upsampled")

    # --refine guided (the default) and its parameters; the auto radius at --size 0 is 16
    soft = P[cls_a]
    got, _ = rmbg(["--classes", name_a], "guided.png")
    want = a8(refine(rgb, soft, radius=16))
    d = max_diff(got[..., 3], want) if got is not None else 99
    expect(d <= 2 and max_diff(want, a8(soft)) > 10,
           f"--refine guided (default): the two-pass guided filter, radius 16 (max diff {d}; it moved alpha by "
           f"up to {max_diff(want, a8(soft))} levels)")
    for args, radius, eps in [(["--refine-radius", "5"], 5, 1e-3), (["--refine-eps", "0.05"], 16, 0.05),
                              (["--refine-radius", "30", "--refine-eps", "0.0001"], 30, 1e-4)]:
        g2, _ = rmbg(["--classes", name_a] + args, "guided2.png")
        want2 = a8(refine(rgb, soft, radius=radius, eps=eps))
        d2 = max_diff(g2[..., 3], want2) if g2 is not None else 99
        expect(d2 <= 2 and max_diff(want2, want) > 2, f"{' '.join(args)}: the filter with radius {radius}, eps {eps} "
                                                       f"(max diff {d2}; differs from the default by {max_diff(want2, want)})")
    soft_guided = got[..., 3] if got is not None else None

    # --threshold
    got, _ = rmbg(["--classes", name_a, "--threshold", "0.5"], "thr.png")
    if got is not None and soft_guided is not None:
        far = np.abs(soft_guided - 127.5) > 1.5
        expect(set(np.unique(got[..., 3])) <= {0, 255} and
               np.array_equal((got[..., 3] == 255)[far], (soft_guided >= 128)[far]),
               "--threshold 0.5: alpha 0 or 255, opaque exactly where the soft alpha is >= 50%")

    # objects: a class map with several objects, then --keep-at and --largest
    best = None
    for c in order[:8]:
        g, _ = rmbg(["--refine", "none", "--classes", dlref_names[int(c)]], "obj.png")
        lab, n = objects(g[..., 3] >= 128)
        if n >= 2 and (best is None or n > best[2]):
            best = (int(c), g, n, lab)
        if best and best[2] >= 3:
            break
    if best is None:
        expect(False, "found no class with two objects in the test photo (change the seed)")
    else:
        c, base, n, lab = best
        sizes = np.bincount(lab.ravel())[1:]
        small = int(np.argmin(sizes)) + 1
        ys, xs = np.nonzero(lab == small)
        x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
        got, _ = rmbg(["--refine", "none", "--classes", dlref_names[c], "--keep-at", f"{x},{y}"], "keepat.png")
        if got is not None:
            lab2, n2 = objects(got[..., 3] >= 128)
            expect(n2 == 1 and lab2[y, x] == 1 and np.array_equal(lab2 == 1, lab == small) and
                   np.array_equal(got[..., 3][lab == small], base[..., 3][lab == small]),
                   f"--keep-at {x},{y}: 1 object of {n} left ({n2}), the one under the point, alpha unchanged")
        # crop, on the small object alone (hard edges: the box is the object's)
        keep = ["--refine", "none", "--classes", dlref_names[c], "--keep-at", f"{x},{y}", "--threshold", "0.5"]
        one, _ = rmbg(keep, "one.png")
        ys, xs = np.nonzero(one[..., 3] > 0)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        got, _ = rmbg(keep + ["--crop"], "crop.png")
        expect(got is not None and (x1 - x0, y1 - y0) != (W, H) and np.array_equal(got, one[y0:y1, x0:x1]),
               f"--crop: the box of alpha > 0, {x1 - x0}x{y1 - y0} at ({x0}, {y0})")
        got, _ = rmbg(keep + ["--crop=3"], "crop3.png")
        want = one[max(0, y0 - 3):min(H, y1 + 3), max(0, x0 - 3):min(W, x1 + 3)]
        expect(got is not None and np.array_equal(got, want), f"--crop=3: 3 pixels more each side, clipped, "
                                                               f"{want.shape[1]}x{want.shape[0]}")
        big = int(np.argmax(sizes)) + 1
        got, _ = rmbg(["--refine", "none", "--classes", dlref_names[c], "--largest"], "largest.png")
        if got is not None:
            lab2, n2 = objects(got[..., 3] >= 128)
            expect(n2 == 1 and np.array_equal(lab2 == 1, lab == big),
                   f"--largest: 1 object of {n} left ({n2}), the largest ({sizes[big - 1]} pixels)")
        ys, xs = np.nonzero(base[..., 3] < 128)
        got, err = rmbg(["--refine", "none", "--classes", dlref_names[c], "--keep-at", f"{xs[0]},{ys[0]}"], "miss.png")
        expect(got is not None and (got[..., 3] < 128).all() and "no object" in err,
               f"--keep-at on the background keeps nothing and warns: {err.strip()}")
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--keep-at", "500,5", "-o", os.path.join(T, "x.png"), PHOTO],
                text=True)
    expect(p.returncode == 64 and "outside" in p.stderr, f"--keep-at outside the image: {p.stderr.strip()}")

    # hints
    keep = np.zeros((H, W), np.uint8)
    keep[5:12, 10:40] = 255
    erase = np.zeros((H, W), np.uint8)
    erase[30:50, 50:75] = 255
    erase[8:10, 30:35] = 255  # overlaps the keep stroke: erase wins
    Image.fromarray(keep).save(os.path.join(T, "keep.png"))
    Image.fromarray(np.stack([erase] * 3, -1)).save(os.path.join(T, "erase.png"))
    got, _ = rmbg(["--classes", name_a, "--keep-mask", os.path.join(T, "keep.png"), "--erase-mask",
                   os.path.join(T, "erase.png")], "hints.png")
    hints = np.where(erase > 0, 2, np.where(keep > 0, 1, 0))
    want = a8(refine(rgb, soft, hints, radius=16))
    if got is not None:
        al = got[..., 3]
        expect((al[erase > 0] == 0).all() and (al[(keep > 0) & (erase == 0)] == 255).all(),
               "--erase-mask pixels are transparent, --keep-mask pixels opaque (erase wins where both)")
        expect(max_diff(al, want) <= 2 and max_diff(want, soft_guided) > 10,
               f"... and the refinement around them is the filter with those hints (max diff {max_diff(al, want)})")
    Image.fromarray(keep[:30]).save(os.path.join(T, "small.png"))
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--keep-mask", os.path.join(T, "small.png"), "-o",
                 os.path.join(T, "x.png"), PHOTO], text=True)
    expect(p.returncode == 64 and "80x60" in p.stderr, f"a mask of another size: {p.stderr.strip()}")

    # formats
    base, err = rmbg(["-v", "--classes", name_a], "base.png")
    mask, _ = rmbg(["--classes", name_a, "--format", "mask"], "mask.png")
    expect(mask is not None and mask.ndim == 2 and np.array_equal(mask, base[..., 3]), "--format mask: the alpha, gray")
    lab_img = Image.open(os.path.join(T, "labels.png")) if rmbg(["--classes", name_a, "--format", "labels"],
                                                                "labels.png")[0] is not None else None
    if lab_img is not None:
        got = np.array(lab_img)
        expect(lab_img.mode == "P" and np.array_equal(got, np.where(base[..., 3] >= 128, labels, 0)),
               "--format labels: palette PNG, arg-max class where alpha >= 50%, 0 elsewhere")
    ov, _ = rmbg(["--format", "overlay"], "overlay.png")
    if ov is not None:
        pal = np.array(Image.open(os.path.join(T, "seg.png")).getpalette()[:63]).reshape(21, 3)
        tint = np.where((labels > 0)[..., None], (rgb.astype(int) + pal[labels] + 1) // 2, rgb)
        present = [c for c in np.argsort(-share, kind="stable") if share[c] > 0]
        rows = min(len(present), (H - 6) // 11)
        box_w = ov.shape[1]
        outside = np.ones((H, W), bool)
        outside[:6 + rows * 11, :] = False
        swatches = [tuple(ov[3 + i * 11 + 4, 3 + 4]) for i in range(rows)]
        expect(ov.shape == (H, W, 3) and np.array_equal(ov[outside], tint[outside]) and
               swatches == [tuple(pal[c]) for c in present[:rows]] and (ov[:6 + rows * 11] == 255).all(-1).sum() > 20,
               f"--format overlay: half-tinted by class, legend of {rows} swatches in share order, white text "
               f"(box {box_w} wide)")

    # -v: the box and the shares
    ys, xs = np.nonzero(base[..., 3] > 0)
    m = re.search(r"subject:\s+x (\d+), y (\d+), (\d+)x(\d+)", err)
    box = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    expect(m is not None and tuple(map(int, m.groups())) == box, f"-v prints the subject's box {box}")
    found = dict((k, float(v)) for k, v in re.findall(r"([a-z]+) ([0-9.]+)%", err.split("classes:")[-1]))
    ok = all(abs(found.get(dlref_names[c], -1) - 100 * share[c]) <= 0.051 for c in range(21) if share[c] > 0)
    expect(ok and len(found) == (share > 0).sum(), f"-v prints every class found with its share ({len(found)})")

    # backgrounds
    al = base[..., 3].astype(np.float64) / 255
    got, _ = rmbg(["--classes", name_a, "--bg-color", "20a040"], "bgc.png")
    want = np.rint(al[..., None] * rgb + (1 - al[..., None]) * np.array([0x20, 0xa0, 0x40]))
    expect(got is not None and got.shape == (H, W, 3) and max_diff(got, want) <= 1, "--bg-color 20a040: opaque RGB, "
                                                                                      "alpha-blended")
    got, _ = rmbg(["--classes", name_a, "--bg-color", "#0000ff80"], "bgc2.png")
    ab = 0x80 / 255
    ao = al + (1 - al) * ab
    want = np.rint((al[..., None] * rgb + ((1 - al) * ab)[..., None] * np.array([0, 0, 255])) / ao[..., None])
    expect(got is not None and got.shape == (H, W, 4) and max_diff(got[..., :3], want) <= 1 and
           max_diff(got[..., 3], np.rint(255 * ao)) <= 1, "--bg-color 0000ff80: RGBA, composited 'over'")
    bgpic = dlref.photo(50, 70, 9)
    bgpic.save(os.path.join(T, "bg.png"))
    got, _ = rmbg(["--classes", name_a, "--bg-image", os.path.join(T, "bg.png")], "bgi.png")
    scale = max(W / 50, H / 70)
    sw, sh = max(W, int(np.ceil(50 * scale - 1e-9))), max(H, int(np.ceil(70 * scale - 1e-9)))
    cover = np.array(bgpic.resize((sw, sh), Image.BILINEAR))[(sh - H) // 2:(sh - H) // 2 + H, (sw - W) // 2:(sw - W) // 2 + W]
    want = np.rint(al[..., None] * rgb + (1 - al[..., None]) * cover)
    expect(got is not None and got.shape == (H, W, 3) and max_diff(got, want) <= 1,
           "--bg-image: over the picture scaled (Pillow) to cover the photo, centred")

    # decontamination
    got, _ = rmbg(["--classes", name_a, "--decontaminate"], "decon.png")
    if got is not None:
        a = got[..., 3]
        semi = (a > 0) & (a < 255)
        want = decontaminate(rgb, refine(rgb, soft, radius=16))
        d = max_diff(got[..., :3][semi], want[semi]) if semi.any() else 99
        expect(np.array_equal(got[..., :3][~semi], rgb[~semi]) and semi.sum() > 20 and d <= 2 and
               max_diff(rgb[semi], want[semi]) > 5,
               f"--decontaminate: blur fusion on {semi.sum()} semi-transparent pixels (max diff {d}), others kept")

    # JPEG out
    jp = os.path.join(T, "out.jpg")
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--classes", name_a, "--bg-color", "ffffff", "-o", jp, PHOTO])
    png, _ = rmbg(["--classes", name_a, "--bg-color", "ffffff"], "white.png")
    pil = os.path.join(T, "pillow.jpg")
    Image.fromarray(png).save(pil, quality=90)  # the same library and settings: the same file
    ok = p.returncode == 0 and open(jp, "rb").read(3) == b"\xff\xd8\xff" and \
        np.array_equal(np.array(Image.open(jp)), np.array(Image.open(pil)))
    expect(ok, f"-o out.jpg with an opaque background: the JPEG Pillow writes of the same picture at quality 90 "
               f"(byte-identical: {ok and open(jp, 'rb').read() == open(pil, 'rb').read()})")
    p = deeplab(["rmbg", "-w", ST, "-o", jp, PHOTO], text=True)
    expect(p.returncode == 64 and "alpha" in p.stderr, f"-o out.jpg with transparency: 64: {p.stderr.strip()}")
    mj = os.path.join(T, "m.jpg")
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--classes", name_a, "--format", "mask", "-o", mj, PHOTO])
    Image.fromarray(mask).save(pil, quality=90)
    expect(p.returncode == 0 and Image.open(mj).mode == "L" and
           np.array_equal(np.array(Image.open(mj)), np.array(Image.open(pil))), "--format mask -o m.jpg: gray JPEG")
    sizes = []
    for q in (30, 95):
        f = os.path.join(T, f"q{q}.jpg")
        deeplab(["rmbg", "-w", ST, "--size", "0", "--bg-color", "ffffff", "--jpeg-quality", q, "-o", f, PHOTO])
        sizes.append(os.path.getsize(f) if os.path.exists(f) else 0)
    expect(0 < sizes[0] < sizes[1], f"--jpeg-quality 30 / 95: {sizes[0]} / {sizes[1]} bytes")

    # the options the HTTP API shares with rmbg (deeplab serve): roi, megapixels, scale, position,
    # crop-margin, strokes, CSS colours
    none, _ = rmbg(["--refine", "none", "--classes", name_a], "none_a.png")
    got, _ = rmbg(["--refine", "none", "--classes", name_a, "--roi", "10,5,60%,50"], "roi.png")
    if got is not None and none is not None:
        inside = np.zeros((H, W), bool)
        inside[5:50, 10:48] = True  # 60% of 80 = 48
        expect(np.array_equal(got[..., 3][inside], none[..., 3][inside]) and (got[..., 3][~inside] == 0).all(),
               "--roi 10,5,60%,50: alpha as without it inside the box [10, 48) x [5, 50), 0 outside")
    got, _ = rmbg(["--refine", "none", "--megapixels", "0.002"], "mp.png")
    mw, mh = int(W * (2000 / (W * H)) ** .5), int(H * (2000 / (W * H)) ** .5)
    small = np.array(img.resize((mw, mh), Image.BILINEAR))
    expect(got is not None and got.shape == (mh, mw, 4) and np.array_equal(got[..., :3], small),
           f"--megapixels 0.002: {mw}x{mh} (at most 2000 pixels, the aspect kept), the photo as Pillow scales it")
    hard, _ = rmbg(["--refine", "none", "--classes", name_a, "--threshold", "0.5", "--largest"], "hard.png")
    ys, xs = np.nonzero(hard[..., 3]) if hard is not None else ([0], [0])
    bx, by, bw, bh = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    sub = Image.fromarray(hard[by:by + bh, bx:bx + bw])
    f = 0.5 * min(W / bw, H / bh)
    nw, nh = max(1, int(np.rint(bw * f))), max(1, int(np.rint(bh * f)))
    want = np.zeros((H, W, 4), np.uint8)
    left, top = int(np.rint(0.5 * (W - nw))), int(np.rint(0.5 * (H - nh)))
    want[top:top + nh, left:left + nw] = np.array(sub.resize((nw, nh), Image.BILINEAR))
    got, _ = rmbg(["--refine", "none", "--classes", name_a, "--threshold", "0.5", "--largest", "--scale", "50%"],
                  "scale.png")
    expect(got is not None and max_diff(got, want) <= 1,
           f"--scale 50%: the subject's box ({bw}x{bh}) scaled by Pillow to fit half the picture ({nw}x{nh}), centred")
    want = np.zeros((H, W, 4), np.uint8)
    want[H - bh:, :bw] = hard[by:by + bh, bx:bx + bw]
    got, _ = rmbg(["--refine", "none", "--classes", name_a, "--threshold", "0.5", "--largest", "--position", "0%,100%"],
                  "position.png")
    expect(got is not None and np.array_equal(got, want), "--position 0%,100%: the subject moved to the bottom left")
    got, _ = rmbg(["--refine", "none", "--classes", name_a, "--threshold", "0.5", "--largest", "--crop",
                   "--crop-margin", "10% 2px"], "cropm.png")
    mt, ml = int(np.rint(0.1 * bh)), 2
    want = hard[max(0, by - mt):min(H, by + bh + mt), max(0, bx - ml):min(W, bx + bw + ml)]
    expect(got is not None and np.array_equal(got, want), f"--crop --crop-margin '10% 2px': {mt} rows (10% of the "
                                                          f"subject's height) and 2 columns more each side")
    got, _ = rmbg(["--refine", "none", "--classes", name_a, "--stroke", "keep,3.5,10,10,40,20", "--stroke",
                   "erase,2,30,40"], "stroke.png")
    if got is not None and none is not None:
        py, px = np.mgrid[0:H, 0:W] + 0.5
        ax, ay, dx, dy = 10.0, 10.0, 30.0, 10.0
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0, 1)
        d_keep = np.hypot(px - ax - t * dx, py - ay - t * dy)
        d_erase = np.hypot(px - 30, py - 40)
        far = (np.abs(d_keep - 3.5) > 0.01) & (np.abs(d_erase - 2) > 0.01)
        want = np.where(d_erase <= 2, 0, np.where(d_keep <= 3.5, 255, none[..., 3]))
        expect(np.array_equal(got[..., 3][far], want[far]) and (d_keep <= 3.5).sum() > 50,
               "--stroke keep,3.5,10,10,40,20 --stroke erase,2,30,40: opaque within 3.5 px of the segment, "
               "transparent within 2 px of the dot, the rest as without")
    got, _ = rmbg(["--classes", name_a, "--bg-color", "lightblue"], "css.png")
    want, _ = rmbg(["--classes", name_a, "--bg-color", "add8e6"], "css_hex.png")
    expect(got is not None and np.array_equal(got, want), "--bg-color lightblue = --bg-color add8e6 (a CSS name)")

    # EXIF orientation 6 and pipes
    rot = os.path.join(T, "rot.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(rot, quality=95, exif=exif.tobytes())
    upright = np.array(ImageOps.exif_transpose(Image.open(rot)).convert("RGB"))
    p = deeplab(["rmbg", "-w", ST, "--size", "0", "--refine", "none", "-o", os.path.join(T, "rot.png"), rot])
    got = np.array(Image.open(os.path.join(T, "rot.png"))) if p.returncode == 0 else None
    expect(got is not None and got.shape == (W, H, 4) and np.array_equal(got[..., :3], upright),
           f"a JPEG with EXIF orientation 6 ({W}x{H} stored) comes out rotated, {H}x{W}")
    with open(PHOTO, "rb") as f:
        p = deeplab(["rmbg", "-w", ST, "--size", "0", "--classes", name_a, "-o", "-", "-"], stdin=f)
    expect(p.returncode == 0 and np.array_equal(np.array(Image.open(io.BytesIO(p.stdout))), base),
           "rmbg -o - - : standard input to standard output, the same PNG")
    with open(PHOTO, "rb") as f:
        p = deeplab(["rmbg", "-w", ST, "--size", "0", "--bg-color", "ffffff", "--ext", "jpg", "-o", "-", "-"], stdin=f)
    expect(p.returncode == 0 and p.stdout[:3] == b"\xff\xd8\xff", "-o - --ext jpg: a JPEG on standard output")
    p = deeplab(["rmbg", "--list-classes"], text=True)
    expect(p.returncode == 0 and all(n in p.stdout for n in dlref_names), "--list-classes lists the 21 names")

    return dlref.summary("rmbg checks")


dlref_names = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]

if __name__ == "__main__":
    sys.exit(main())
