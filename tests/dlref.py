"""dlref.py - what the Python tests share: seeded random DeepLabV3 models, test images, file
helpers, and running bin/deeplab.

The reference is Debian's torchvision (python3-torchvision). Nothing is downloaded: models are
torchvision's architectures with seeded random weights whose BatchNorm statistics are calibrated
on images, so that activations stay in a realistic range and the logits vary across the image as
a trained model's do.
"""
import json
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
except ImportError as e:  # the suite needs the reference: say how to get it, and fail
    print(f"FAIL: {e}: the tests need Debian's python3-torchvision (apt-get install python3-torchvision)")
    sys.exit(1)

DEEPLAB = os.environ.get("DEEPLAB", os.path.join(os.path.dirname(__file__), "..", "bin", "deeplab"))
TMP = os.environ.get("TEST_TMP") or os.path.join(os.path.dirname(__file__), "..", "build", "test-tmp", "manual")
os.makedirs(TMP, exist_ok=True)
torch.set_num_threads(os.cpu_count() or 1)

failures = []  # every test's failed checks; a test exits 1 when it is not empty


def expect(ok, what):
    """One check: prints ok/FAIL and the description, and records a failure."""
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def summary(what):
    """The end of a test: says how many checks failed, or that all WHAT passed; the exit status."""
    if failures:
        print(f"{len(failures)} check(s) FAILED")
        return 1
    print(f"all {what} passed")
    return 0


EMULATED = os.environ.get("DL_TEST_EMU", "") not in ("", "0")
# make test SANITIZE=1 (its build folder is build-asan): every case still runs, the largest sizes
# are left out where a test says so (each sanitized run is 2-3x slower; the code paths are the same)
SANITIZED = "asan" in os.environ.get("BUILD_DIR", "")


def gpu_skip_reason(probe):
    """None when `deeplab PROBE...` (a tiny run on the GPU) works, else why the GPU tests skip.
    Exit 69 (device unavailable) is a reason to skip; any other failure is a failed check.
    With DL_TEST_EMU=1 (tests/run.sh, for a deeplab built with the emulated GPU) there is no
    nvidia-smi to ask: the probe alone decides."""
    import shutil
    if not EMULATED:
        if not shutil.which("nvidia-smi"):
            return "nvidia-smi not found"
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if p.returncode != 0:
            return f"nvidia-smi -L failed: {(p.stderr or p.stdout).strip()}"
    p = run(probe, check=False)
    if p.returncode == 69:
        return p.stderr.strip()
    if p.returncode != 0:
        expect(False, f"deeplab {' '.join(probe)} exited {p.returncode}: {p.stderr.strip()}")
    return None


def photo(w, h, seed):
    """A deterministic photo-like RGB image: a smooth background, overlapping shapes, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / max(w - 1, 1) + y / max(h - 1, 1)) / 2
    img[:] = c0 * (1 - t[..., None]) + c1 * t[..., None]
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
        mask = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        img[mask] = rng.uniform(0, 255, 3) + 20 * np.sin(x[mask] / rng.uniform(2, 9))[:, None]
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def to_input(img):
    """torchvision's preprocessing without resize: 1 x 3 x H x W float32, normalised."""
    from torchvision.transforms._presets import SemanticSegmentation
    return SemanticSegmentation(resize_size=None)(img).unsqueeze(0)


def make_model(arch="resnet101", num_classes=21, seed=0):
    """torchvision's deeplabv3_<arch> with seeded random weights and calibrated BatchNorm."""
    torch.manual_seed(seed)
    ctor = getattr(torchvision.models.segmentation, f"deeplabv3_{arch}")
    model = ctor(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                # Non-trivial affine parameters, so that folding them is really tested. The last
                # BN of each residual branch (bn3) gets small gammas, as in trained ResNets: with
                # gammas near 1 there, 33 random blocks amplify rounding so much that torchvision
                # in float32 differs from itself in float64 by 4e-4 (with 0.1-0.3: 7e-6), and no
                # float32 engine could be held to 1e-4.
                lo, hi = (0.1, 0.3) if name.endswith("bn3") else (0.6, 1.4)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * (hi - lo) + lo)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for i in range(2):
            batch = torch.cat([to_input(photo(97, 81, 1000 * seed + 10 * i + j)) for j in range(4)])
            model(batch)
    return model.eval()


def reference_logits(model, x):
    with torch.inference_mode():
        return model(x)["out"].numpy()


def save_safetensors(path, tensors):
    """A minimal safetensors writer (the Python package is not in Debian): header JSON with
    the tensors in the given order, data 8-byte aligned, like safetensors.torch.save_file."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        data = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(args, check=True):
    """Runs bin/deeplab; returns the CompletedProcess (stdout/stderr as text)."""
    p = subprocess.run([DEEPLAB] + [str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"deeplab {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()}")
    return p


def compare_logits(ours, ref, tiny=1e-3):
    """max |ours - ref| / max |ref|, and the arg-max disagreements among pixels whose top-two
    reference margin is above tiny * max |ref|. Returns (rel_err, disagreeing, compared, total)."""
    scale = float(np.abs(ref).max())
    rel = float(np.abs(ours - ref).max()) / scale
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    decided = margin > tiny * scale
    differ = (ours.argmax(1) != ref.argmax(1)) & decided
    return rel, int(differ.sum()), int(decided.sum()), int(margin.size)
