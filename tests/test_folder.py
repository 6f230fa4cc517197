#!/usr/bin/env python3
"""test_folder.py - many photos in one run: `deeplab rmbg|segment -o DIR IN...` (tools/pipeline.c).

  - a folder (PNG, JPEG, one with EXIF orientation 6, a truncated JPEG, a text file, a hidden
    file, a subfolder) and a loose file, to a folder that does not exist yet (-o new/):
    every photo written as NAME.png, the bad one reported on one line and the others going on,
    exit status 65 (the failure's), a summary "4 written, 1 failed"
  - outputs byte-identical to one-photo runs of the same options (PNG and the EXIF JPEG)
  - plain progress lines when stderr is not a terminal ([k/N] per photo), a progress bar with
    images/s and ETA when it is (a pseudo-terminal); -v: the model loaded once, one report per photo
  - existing outputs skipped (left untouched) unless --overwrite; the summary says how many
  - --batch 2 (photos of two sizes: batches split by size) and --io-threads 3: the same outputs
  - segment in folder mode: the class maps of one-photo runs
  - refused before any work (exit 64): two inputs that would write the same output, an output
    that would overwrite an input, several inputs with -o FILE, - with several inputs; a folder
    without photos (66)
Exit 0 = pass, 1 = fail.
"""
import os
import pty
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

import dlref

T = dlref.TMP
expect = dlref.expect


def deeplab(args, **kw):
    return subprocess.run([dlref.DEEPLAB] + [str(a) for a in args], capture_output=True, text=True, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    model = dlref.make_model("resnet50", 21, seed=21)
    st = os.path.join(T, "model.safetensors")
    dlref.save_safetensors(st, model.state_dict())
    run = ["-w", st, "--size", "0"]

    src = os.path.join(T, "photos")
    os.makedirs(os.path.join(src, "sub"), exist_ok=True)
    dlref.photo(64, 48, 1).save(os.path.join(src, "a.png"))
    dlref.photo(64, 48, 2).save(os.path.join(src, "b.jpg"), quality=90)
    dlref.photo(72, 40, 3).save(os.path.join(src, "c.PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6
    dlref.photo(64, 48, 4).save(os.path.join(src, "d_rotated.jpeg"), quality=90, exif=exif.tobytes())
    data = read(os.path.join(src, "b.jpg"))
    with open(os.path.join(src, "e_bad.jpg"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(src, "notes.txt"), "w") as f:
        f.write("not a photo\n")
    dlref.photo(8, 8, 5).save(os.path.join(src, ".hidden.png"))
    dlref.photo(8, 8, 6).save(os.path.join(src, "sub", "deeper.png"))
    loose = os.path.join(T, "loose.png")
    dlref.photo(72, 40, 7).save(loose)

    # the folder and a loose file, into a folder to make
    out = os.path.join(T, "out") + "/"
    p = deeplab(["rmbg"] + run + ["-o", out, src, loose])
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    want = ["a.png", "b.png", "c.png", "d_rotated.png", "loose.png"]
    expect(names == want, f"outputs {names}: every photo of the folder (not the text, hidden or sub-folder files) "
                          f"and the loose one")
    lines = p.stderr.strip().splitlines()
    bad = [ln for ln in lines if "e_bad.jpg" in ln]
    expect(p.returncode == 65 and len(bad) == 1 and "truncated" in bad[0],
           f"the truncated JPEG: one line, exit 65, the others written: {bad}")
    progress = [ln for ln in lines if "] " in ln and " -> " in ln]
    expect(len(progress) == 5 and all("/6]" in ln for ln in progress),
           f"a progress line per photo written ([k/6]): {progress[:1]}")
    expect("5 written, 1 failed" in lines[-1] and "images/s" in lines[-1], f"summary: {lines[-1]}")
    ok = os.path.isdir(out) and Image.open(os.path.join(out, "d_rotated.png")).size == (48, 64)
    expect(ok, "the EXIF-rotated JPEG comes out upright (48x64)")

    # the same bytes as one-photo runs
    for name, src_name in [("a.png", "a.png"), ("d_rotated.png", "d_rotated.jpeg")]:
        single = os.path.join(T, "single_" + name)
        q = deeplab(["rmbg"] + run + ["-o", single, os.path.join(src, src_name)])
        expect(q.returncode == 0 and q.stderr == "" and read(single) == read(os.path.join(out, name)),
               f"{name}: identical to a one-photo run (which prints nothing)")

    # existing outputs are skipped unless --overwrite
    with open(os.path.join(out, "a.png"), "wb") as f:
        f.write(b"old")
    os.remove(os.path.join(out, "b.png"))
    p = deeplab(["rmbg"] + run + ["-o", out, os.path.join(src, "a.png"), os.path.join(src, "b.jpg")])
    expect(p.returncode == 0 and read(os.path.join(out, "a.png")) == b"old" and os.path.exists(os.path.join(out, "b.png"))
           and "1 written, 1 skipped" in p.stderr, f"an existing output is skipped: {p.stderr.strip().splitlines()[-1:]}")
    p = deeplab(["rmbg"] + run + ["--overwrite", "-o", out, os.path.join(src, "a.png")])
    expect(p.returncode == 0 and read(os.path.join(out, "a.png")) == read(os.path.join(T, "single_a.png")),
           "--overwrite replaces it")

    # a terminal gets a progress bar; -v: the model is loaded once and each photo reported
    clean = os.path.join(T, "clean")
    os.makedirs(clean, exist_ok=True)
    for n in ["a.png", "b.jpg", "c.PNG"]:
        shutil.copy(os.path.join(src, n), clean)
    master, slave = pty.openpty()
    proc = subprocess.Popen([dlref.DEEPLAB, "rmbg", "-v"] + run + ["-o", os.path.join(T, "tty") + "/", clean],
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    text = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        text += chunk
    proc.wait()
    os.close(master)
    text = text.decode(errors="replace")
    expect(proc.returncode == 0 and "\r" in text and "3/3 [" in text and "images/s" in text and "ETA" in text,
           f"on a terminal: a progress bar ({text.count(chr(13))} redraws)")
    expect(text.count("model:") == 1 and text.count("network input") == 3 and "forward passes" in text,
           "-v: one model load, one report per photo, the network's total")

    # batching (two sizes: 64x48 and 72x40) and more threads give the same outputs
    for args, passes in ((["--batch", "2"], 2), (["--io-threads", "3"], 3)):
        o2 = os.path.join(T, "o_" + args[0].strip("-")) + "/"
        p = deeplab(["rmbg", "-v"] + run + args + ["-o", o2, clean])
        same = p.returncode == 0 and f"in {passes} forward passes" in p.stderr and \
            ("--io-threads" not in args or "3 decoding threads" in p.stderr and "3 encoding threads" in p.stderr)
        for n in ["a.png", "b.png", "c.png"]:
            if same:
                x = np.array(Image.open(os.path.join(o2, n))).astype(int)
                y = np.array(Image.open(os.path.join(T, "tty", n))).astype(int)
                same = x.shape == y.shape and np.abs(x - y).max() <= 1
        expect(same, f"{' '.join(args)}: {passes} forward passes{', 3 threads each' if passes == 3 else ''}, "
                     f"the same cut-outs (within one level)")

    # segment
    p = deeplab(["segment"] + run + ["-o", os.path.join(T, "seg") + "/", clean])
    q = deeplab(["segment"] + run + ["-o", os.path.join(T, "seg_c.png"), os.path.join(clean, "c.PNG")])
    expect(p.returncode == 0 and q.returncode == 0 and
           read(os.path.join(T, "seg", "c.png")) == read(os.path.join(T, "seg_c.png")) and
           len(os.listdir(os.path.join(T, "seg"))) == 3, "segment -o DIR/: the class maps of one-photo runs")

    # refused before any work
    other = os.path.join(T, "other")
    os.makedirs(other, exist_ok=True)
    dlref.photo(16, 16, 8).save(os.path.join(other, "a.jpg"))
    for args, text in [(["-o", os.path.join(T, "x") + "/", os.path.join(src, "a.png"), os.path.join(other, "a.jpg")],
                        "both"),
                       (["-o", clean + "/", clean], "would be an input"),
                       (["-o", os.path.join(T, "one.png"), loose, loose], "one input"),
                       (["-o", os.path.join(T, "x") + "/", "-", loose], "standard input")]:
        p = deeplab(["rmbg"] + run + args)
        expect(p.returncode == 64 and text in p.stderr and len(p.stderr.strip().splitlines()) == 1,
               f"refused: {p.stderr.strip()}")

    empty = os.path.join(T, "empty")
    os.makedirs(empty, exist_ok=True)
    p = deeplab(["rmbg"] + run + ["-o", os.path.join(T, "x") + "/", empty])
    expect(p.returncode == 66 and "no PNG or JPEG photo" in p.stderr, f"an empty folder: 66: {p.stderr.strip()}")

    return dlref.summary("folder checks")


if __name__ == "__main__":
    sys.exit(main())
