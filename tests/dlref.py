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


def gradient(w, h, rng):
    """Pixel coordinates x, y and an h x w x 3 float image going from one random colour to another."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / max(w - 1, 1) + y / max(h - 1, 1)) / 2
    img[:] = c0 * (1 - t[..., None]) + c1 * t[..., None]
    return x, y, img


def photo(w, h, seed):
    """A deterministic photo-like RGB image: a smooth background, overlapping shapes, noise."""
    rng = np.random.default_rng(seed)
    x, y, img = gradient(w, h, rng)
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


def make_model(arch="resnet101", num_classes=21, seed=0, bn3=(0.1, 0.3)):
    """torchvision's deeplabv3_<arch> with seeded random weights and calibrated BatchNorm; bn3:
    the range of the residual branches' last BN gammas."""
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
                lo, hi = bn3 if name.endswith("bn3") else (0.6, 1.4)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * (hi - lo) + lo)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        model.train()
        for i in range(2):
            batch = torch.cat([to_input(photo(97, 81, 1000 * seed + 10 * i + j)) for j in range(4)])
            model(batch)
    return model.eval()


def portrait(w, h, seed):
    """A photo with a subject: a striped figure (a head on a body, in one family of colours) before
    a background like photo()'s (a gradient, a few shapes, noise). Returns the image and the
    figure's mask (h x w booleans)."""
    rng = np.random.default_rng(seed)
    x, y, img = gradient(w, h, rng)
    for _ in range(3):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.2) * w, rng.uniform(0.05, 0.2) * h
        img[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1] = rng.uniform(0, 255, 3)
    cx = rng.uniform(0.35, 0.65) * w
    hy, hr = rng.uniform(0.2, 0.35) * h, rng.uniform(0.08, 0.14) * min(w, h)
    head = ((x - cx) / hr) ** 2 + ((y - hy) / (1.2 * hr)) ** 2 < 1
    bw = rng.uniform(0.18, 0.3) * w
    body = (((x - cx) / bw) ** 2 + ((y - h) / (h - hy - hr)) ** 2 < 1) & (y > hy + 0.8 * hr)
    fig = head | body
    img[fig] = np.array([200.0, 70.0, 60.0]) + rng.normal(0, 12, 3) + 50 * np.sin(x[fig] / 2.0 + y[fig] / 3.0)[:, None]
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), fig


PERSON = 15  # VOC's person


def trained_model(seed=7, photos=32, steps=200):
    """A ResNet-101 conditioned like a trained network, for the bars that only mean something on
    one: make_model's backbone with the residual branches' last gammas at 0.05-0.15, and its head
    after ASPP (classifier.1 to .4) trained with cross-entropy to mark the figure of portrait()
    photos as a person and the rest as background, on photos other than the tests'. Its logits
    are confident (a margin of tens inside the figure and out) with a thin transition at the
    figure's edge, as a trained segmenter's are, where a random head's are flat and noisy.
    Trained once (~2 minutes) and kept in build/test-cache/ under a hash of this file, shared by
    the plain and the sanitizer runs. Returns (the model, its safetensors path)."""
    import hashlib
    key = hashlib.sha256(open(os.path.abspath(__file__), "rb").read() + f"{seed} {photos} {steps}".encode())
    cache = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "test-cache")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"trained-r101-{seed}-{key.hexdigest()[:16]}")
    if os.path.exists(path + ".pt"):  # every weight and statistic is in the file: no calibration
        model = torchvision.models.segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None,
                                                                    num_classes=21, aux_loss=True)
        model.load_state_dict(torch.load(path + ".pt"))
        return model.eval(), path + ".safetensors"
    model = make_model("resnet101", 21, seed=seed, bn3=(0.05, 0.15))
    feats, labels = [], []
    for i in range(photos):
        img, fig = portrait(*((160, 200) if i % 2 else (320, 240)), 500 + i)
        got = {}
        hook = model.classifier[0].register_forward_hook(lambda mod, inp, out: got.__setitem__("f", out))
        with torch.inference_mode():
            model(to_input(img))
        hook.remove()
        f = got["f"].clone()
        share = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(fig, dtype=torch.float32)[None, None], f.shape[2:])
        feats.append(f)
        labels.append(torch.where(share[0] > 0.5, PERSON, 0).long())
    head = torch.nn.Sequential(*list(model.classifier.children())[1:])
    head.train()
    for mod in head.modules():  # the calibrated statistics stay
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(torch.nn.functional.cross_entropy(head(f), y) for f, y in zip(feats, labels)) / len(feats)
        loss.backward()
        opt.step()
    model.eval()
    for old in os.listdir(cache):  # models of earlier versions of this file: 480 MB each
        if old.startswith(f"trained-r101-{seed}-") and not old.startswith(os.path.basename(path)):
            os.remove(os.path.join(cache, old))
    torch.save(model.state_dict(), path + ".pt.tmp")
    save_safetensors(path + ".safetensors.tmp", model.state_dict())
    os.replace(path + ".safetensors.tmp", path + ".safetensors")
    os.replace(path + ".pt.tmp", path + ".pt")
    return model, path + ".safetensors"


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
