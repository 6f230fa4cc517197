"""test_cli.py - the command's contract: help, exit codes, one-line errors, no partial outputs.

Every failure case asserts the documented exit status, exactly one line on stderr (naming the
file or option where there is one), and that the output folder holds nothing new: neither the
output nor a temporary file. Success cases check that the output exists and is complete.
"""
import os
import shutil
import subprocess
import sys

import torch

import dlref

expect = dlref.expect
T = dlref.TMP


def deeplab(args, cwd=None, env=None):
    return subprocess.run([dlref.DEEPLAB] + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def fails(args, status, mentions="", outdir=None, cwd=None, env=None):
    """Runs a command that must fail with status and one stderr line containing mentions."""
    outdir = outdir or os.path.join(T, "out")
    os.makedirs(outdir, exist_ok=True)
    before = set(os.listdir(outdir))
    p = deeplab(args, cwd=cwd, env=env)
    lines = p.stderr.strip().splitlines()
    after = set(os.listdir(outdir))
    ok = (p.returncode == status and len(lines) == 1 and mentions in p.stderr and after == before
          and lines[0].startswith("deeplab: "))
    expect(ok, f"{' '.join(map(str, args))[:90]} -> exit {p.returncode} (want {status}), "
               f"{len(lines)} stderr line(s): {lines[0] if lines else ''!r}"
               + (f"; new files {sorted(after - before)}" if after != before else ""))


def main():
    model = dlref.make_model("resnet50", 3, seed=5)
    sd = model.state_dict()
    st = os.path.join(T, "model.safetensors")
    dlref.save_safetensors(st, sd)
    png = os.path.join(T, "in.png")
    dlref.photo(47, 33, 1).save(png)
    out = os.path.join(T, "out")
    os.makedirs(out, exist_ok=True)
    o = os.path.join(out, "o.png")
    run = ["-w", st, "--size", "0"]

    # help and usage
    for cmd in ["segment", "rmbg", "info", "convert"]:
        p = deeplab([cmd, "--help"])
        expect(p.returncode == 0 and p.stdout.startswith(f"usage: deeplab {cmd}"), f"{cmd} --help prints its usage")
    p = deeplab(["--help"])
    expect(p.returncode == 0 and "rmbg" in p.stdout and "exit status" in p.stdout.lower(), "--help lists commands")
    fails([], 64, "expected a command")
    fails(["frobnicate"], 64, "unknown command 'frobnicate'")
    fails(["segment"] + run + ["--bogus", "-o", o, png], 64, "--bogus")
    fails(["segment"] + run + ["--size", "abc", "-o", o, png], 64, "--size")
    fails(["segment", "-w", st, "--size", "-5", "-o", o, png], 64, "--size")
    fails(["segment"] + run + ["--device", "gpu", "-o", o, png], 64, "--device")
    fails(["segment"] + run + ["--threads", "x", "-o", o, png], 64, "--threads")
    fails(["segment"] + run + [png], 64, "-o")
    fails(["segment"] + run + ["-o", o], 64, "no input")
    fails(["segment"] + run + ["-o", o, png, png], 64, "one input")
    fails(["rmbg"] + run + ["-o"], 64, "-o")
    fails(["convert", "only-one.pth"], 64, "expected SRC.pth DST.safetensors")
    fails(["convert", "a.pth", "b.st", "--dtype", "f64"], 64, "--dtype")
    fails(["info", st, "extra"], 64, "extra")

    # inputs
    fails(["segment"] + run + ["-o", o, os.path.join(T, "missing.png")], 66, "missing.png")
    fails(["segment"] + run + ["-o", o, T], 66, "directory")
    text = os.path.join(T, "text.png")
    with open(text, "w") as f:
        f.write("this is not an image\n")
    fails(["rmbg"] + run + ["-o", o, text], 65, "text.png")
    fails(["segment", "-w", os.path.join(T, "nope.safetensors"), "-o", o, png], 66, "nope.safetensors")
    empty = os.path.join(T, "empty")
    os.makedirs(empty, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DEEPLAB_WEIGHTS"}
    fails(["rmbg", "-o", o, png], 66, "make weights", cwd=empty, env=env)
    fails(["rmbg", "-o", o, png], 66, "nope.safetensors", cwd=empty,
          env=dict(env, DEEPLAB_WEIGHTS=os.path.join(T, "nope.safetensors")))
    junk = os.path.join(T, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(os.urandom(4096))
    fails(["segment", "-w", junk, "-o", o, png], 65, "junk.safetensors")
    fails(["info", junk], 65, "junk.safetensors")

    # a weights file with one tensor missing and one of the wrong shape: both named, one line
    bad = {k: v for k, v in sd.items() if k != "backbone.layer2.1.conv2.weight"}
    bad["classifier.1.weight"] = torch.zeros(256, 256, 1, 1)
    bad_st = os.path.join(T, "bad.safetensors")
    dlref.save_safetensors(bad_st, bad)
    fails(["segment", "-w", bad_st, "-o", o, png], 65, "2 problems")
    p = deeplab(["info", bad_st])
    expect(p.returncode == 65 and "backbone.layer2.1.conv2.weight" in p.stderr and
           "classifier.1.weight has shape [256, 256, 1, 1], expected [256, 256, 3, 3]" in p.stderr,
           f"every bad tensor is named: {p.stderr.strip()[:160]}")
    fails(["segment", "-w", png, "-o", o, png], 65, "a PNG image")  # a PNG given as weights
    pth = os.path.join(T, "model.pth")
    torch.save({"a": torch.zeros(2)}, pth)
    fails(["rmbg", "-w", pth, "-o", o, png], 65, "deeplab convert")  # a checkpoint not yet converted
    torch.save({"a": torch.zeros(2)}, pth, _use_new_zipfile_serialization=False)
    fails(["info", pth], 65, "deeplab convert")

    # outputs
    fails(["segment"] + run + ["-o", os.path.join(T, "no", "such", "dir", "o.png"), png], 73, "o.png")
    fails(["segment"] + run + ["-o", out, png], 73, "directory")
    shutil.copy(png, os.path.join(out, "same.png"))
    fails(["rmbg"] + run + ["-o", os.path.join(out, "same.png"), os.path.join(out, "same.png")], 64, "input")
    fails(["rmbg"] + run + ["-o", "/dev/full", png], 74, "/dev/full")
    fails(["segment"] + run + ["--save-logits", os.path.join(T, "no", "l.npy"), "-o", o, png], 73, "l.npy")
    p = deeplab(["rmbg"] + run + ["-o", "/dev/null", png])
    expect(p.returncode == 0 and os.path.exists("/dev/null") and not os.path.isfile("/dev/null"),
           "-o /dev/null writes to the device and leaves it a device")

    # an existing output is replaced whole; nothing else appears beside it
    with open(o, "wb") as f:
        f.write(b"old")
    p = deeplab(["segment"] + run + ["-o", o, png])
    expect(p.returncode == 0 and p.stderr == "" and open(o, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
           and sorted(os.listdir(out)) == ["o.png", "same.png"], "segment replaces an existing output atomically")

    # through a symbolic link the link's target is replaced and the link stays a link
    ldir = os.path.join(T, "links")
    os.makedirs(ldir, exist_ok=True)
    target, link = os.path.join(ldir, "target.png"), os.path.join(ldir, "link.png")
    with open(target, "w") as f:
        f.write("old")
    os.symlink("target.png", link)
    p = deeplab(["rmbg"] + run + ["-o", link, png])
    expect(p.returncode == 0 and os.path.islink(link) and open(target, "rb").read(4) == b"\x89PNG"
           and sorted(os.listdir(ldir)) == ["link.png", "target.png"], "-o through a symlink writes its target")

    # devices: without a usable GPU, --device cuda is an error, never a silent fallback; a build with
    # the emulated GPU (make SANITIZE=1, EMU=1) runs it there, and --device auto still on the CPU
    has_gpu = shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    emulated = "emulated GPU" in deeplab(["--version"]).stdout
    if emulated:
        # at the photo's own size: 520x520 on the emulated GPU under the sanitizers takes minutes
        p = deeplab(["segment", "-v", "-w", st, "--size", "0", "--device", "cuda", "-o", o, png])
        expect(p.returncode == 0 and "device:   cuda (the emulated GPU" in p.stderr,
               "--device cuda runs on the emulated GPU and -v says so")
        p = deeplab(["segment", "-v", "-w", st, "--size", "0", "-o", o, png])
        expect(p.returncode == 0 and "device:   cpu" in p.stderr, "--device auto never takes the emulated GPU")
    elif not has_gpu:
        fails(["segment", "-w", st, "--device", "cuda", "-o", o, png], 69, "CUDA")
    p = deeplab(["rmbg", "-v", "-w", st, "--size", "0", "--device", "cpu", "-o", os.path.join(out, "c.png"), png])
    expect(p.returncode == 0 and "device:   cpu" in p.stderr, "--device cpu runs on the CPU and says so with -v")
    p = deeplab(["info", st])
    expect(p.returncode == 0 and "ResNet50" in p.stdout and "classes:       3" in p.stdout, "info on a good file")

    return dlref.summary("CLI checks")


if __name__ == "__main__":
    sys.exit(main())
