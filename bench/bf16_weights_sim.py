"""bench/bf16_weights_sim.py - where bf16's error in rmbg's alpha comes from, simulated in
torchvision on tests/dlref.py's trained-like model and bench/bf16_alpha.py's three portraits.

The model's batch norms are folded into its convolutions (as deeplab does) and bf16 is imitated:
a convolution's folded weights rounded to bf16, its input rounded to bf16 as it is read, sums in
fp32. The stem and layer1 are never rounded (deeplab keeps them fp32). Without refinement, alpha is
255 x (1 - background probability); printed is the share of pixels within 2/255 of fp32's, pooled
over the three photos, then per photo. Modes (arguments, any number):
  both | w | a       weights and inputs rounded / weights only / inputs only
  groups | kinds     weights only, one group of layers (layer2, layer3 in thirds, layer4, ASPP,
                     head) or one kind (conv1, conv2, conv3, downsample, classifier) at a time
  keep:P,P,...       weights and inputs rounded except in layers whose names start with a P
                     (DS stands for the three layerN.0.downsample), as DEEPLAB_BF16_KEEP_FP32 does
  oracle             weights rounded, each convolution's bias corrected by the rounding times its
                     input's mean on these photos (a data-aware correction, an upper bound for one)
e.g. /usr/bin/python3 bench/bf16_weights_sim.py both w a groups kinds keep:DS keep:DS,classifier.0.convs.4
About 7 s per configuration on 2 cores (after dlref.trained_model's first training, ~2 minutes).
"""
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
os.environ.setdefault("TEST_TMP", os.path.join(HERE, "..", "build", "bench-tmp", "bf16_weights_sim"))
os.makedirs(os.environ["TEST_TMP"], exist_ok=True)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dlref  # noqa: E402

SIZES = [(200, 160), (320, 240), (400, 300)]  # bench/bf16_alpha.py's photos
DS = ["backbone.layer2.0.downsample", "backbone.layer3.0.downsample", "backbone.layer4.0.downsample"]


def folded(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, bias=True)
    out.weight.data = conv.weight.data * s[:, None, None, None]
    out.bias.data = bn.bias.data - bn.running_mean * s
    return out


def fold(model):
    """each convolution followed by a batch norm replaced by one with the norm folded in"""
    m = copy.deepcopy(model)
    for mod in list(m.modules()):
        kids = list(mod.named_children())
        for (an, a), (bn, b) in zip(kids, kids[1:]):  # in a Sequential
            if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                setattr(mod, an, folded(a, b))
                setattr(mod, bn, torch.nn.Identity())
        for i in (1, 2, 3):  # a Bottleneck's conv1/bn1 ... (and the stem's conv1/bn1)
            c, b = getattr(mod, f"conv{i}", None), getattr(mod, f"bn{i}", None)
            if isinstance(c, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
                setattr(mod, f"conv{i}", folded(c, b))
                setattr(mod, f"bn{i}", torch.nn.Identity())
    return m.eval()


def bf(t):
    return t.bfloat16().float()


def roundable(m):
    return [(n, c) for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d) and not n.startswith("aux")
            and n != "backbone.conv1" and not n.startswith("backbone.layer1.")]


def alpha(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return np.rint(255 * (1 - (e / e.sum(1, keepdims=True))[0, 0])).astype(int)


def logits(m, x, inputs_sel=None):
    hooks = [c.register_forward_pre_hook(lambda mod, inp: (bf(inp[0]),))
             for n, c in roundable(m) if inputs_sel and inputs_sel(n)]
    with torch.inference_mode():
        out = m(x)["out"].numpy()
    for h in hooks:
        h.remove()
    return out


def weights_rounded(m, sel):
    m = copy.deepcopy(m)
    for n, c in roundable(m):
        if sel(n):
            c.weight.data = bf(c.weight.data)
    return m


def bias_corrected(m, base, means):
    m = copy.deepcopy(m)
    ref = dict(roundable(base))
    for n, c in roundable(m):
        dw = c.weight.data - ref[n].weight.data
        c.bias.data -= (dw.sum((2, 3)) * means[n][None, :]).sum(1)
    return m


def input_means(m, imgs):
    acc = {}
    hooks = [c.register_forward_pre_hook(lambda mod, inp, n=n: acc.setdefault(n, []).append(inp[0].mean((0, 2, 3))))
             for n, c in roundable(m)]
    with torch.inference_mode():
        for x in imgs:
            m(x)
    for h in hooks:
        h.remove()
    return {n: torch.stack(v).mean(0) for n, v in acc.items()}


def main():
    torch.set_num_threads(os.cpu_count() or 1)
    model, _ = dlref.trained_model()
    base = fold(model)
    imgs = [dlref.to_input(dlref.portrait(w, h, 40 + i)[0]) for i, (w, h) in enumerate(SIZES)]
    ref = [alpha(logits(base, x)) for x in imgs]
    worst = max(float(np.abs(logits(base, x) - dlref.reference_logits(model, x)).max()) for x in imgs)
    print(f"folded model against torchvision's: logits within {worst:.1e}")

    def report(label, m, inputs_sel):
        diffs = [np.abs(alpha(logits(m, x, inputs_sel)) - r) for x, r in zip(imgs, ref)]
        pooled = sum(int((d <= 2).sum()) for d in diffs) / sum(d.size for d in diffs)
        per = " ".join(f"{100 * float((d <= 2).mean()):.2f}" for d in diffs)
        print(f"{label:60s} {100 * pooled:6.2f}%  ({per})", flush=True)

    every = lambda n: True  # noqa: E731
    groups = {
        "layer2": lambda n: n.startswith("backbone.layer2."),
        "layer3 blocks 0-7": lambda n: n.startswith("backbone.layer3.") and int(n.split(".")[2]) < 8,
        "layer3 blocks 8-15": lambda n: n.startswith("backbone.layer3.") and 8 <= int(n.split(".")[2]) < 16,
        "layer3 blocks 16-22": lambda n: n.startswith("backbone.layer3.") and int(n.split(".")[2]) >= 16,
        "layer4": lambda n: n.startswith("backbone.layer4."),
        "ASPP": lambda n: n.startswith("classifier.0."),
        "head after ASPP": lambda n: n.startswith("classifier.") and not n.startswith("classifier.0."),
    }
    kinds = {k: (lambda n, k=k: n.endswith(k) and "downsample" not in n) for k in ("conv1", "conv2", "conv3")}
    kinds["downsample"] = lambda n: "downsample" in n
    kinds["classifier"] = lambda n: n.startswith("classifier.")
    for mode in sys.argv[1:] or ["both", "w", "a"]:
        if mode == "both":
            report("weights and inputs rounded", weights_rounded(base, every), every)
        elif mode == "w":
            report("weights rounded", weights_rounded(base, every), None)
        elif mode == "a":
            report("inputs rounded", base, every)
        elif mode in ("groups", "kinds"):
            for name, sel in (groups if mode == "groups" else kinds).items():
                report(f"weights rounded in {name} only", weights_rounded(base, sel), None)
        elif mode.startswith("keep:"):
            keep = [k for k in mode[5:].split(",") if k and k != "DS"] + (DS if "DS" in mode[5:].split(",") else [])
            sel = lambda n, keep=keep: not any(n.startswith(k) for k in keep)  # noqa: E731
            report(f"both rounded but in {mode[5:]}", weights_rounded(base, sel), sel)
        elif mode == "oracle":
            m = bias_corrected(weights_rounded(base, every), base, input_means(base, imgs))
            report("weights rounded, biases corrected by input means", m, None)
            report("  and inputs rounded", m, every)
        else:
            sys.exit(f"bf16_weights_sim.py: unknown mode {mode!r} (see the docstring)")


if __name__ == "__main__":
    main()
