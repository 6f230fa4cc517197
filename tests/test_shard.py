#!/usr/bin/env python3
"""test_shard.py - sharded folder runs: `deeplab rmbg|segment --shard I/N|env/N --manifest FILE`.

  - 4 shards over a folder of 40 small photos (PNG and JPEG, three sizes), run at once into one
    output folder (two by I/N, two by env/N: JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID): exactly
    the outputs of one unsharded run, byte for byte; every photo in exactly one manifest line
    "written", in the shard that Python's own FNV-1a + MurmurHash3-finaliser of its name gives
    (so the split is the documented one, stable across versions); every shard got some
    photos; the summaries count the shard's photos of the 40
  - a shard killed with SIGKILL midway: no output under its final name that is not whole (each
    one the unsharded bytes); rerun, it skips what it finished ("K skipped", K the manifest's
    written lines so far) and does only the rest: across both runs each of its photos written
    exactly once; its outputs then the unsharded ones; the temporary files of its photos that
    the kill left are removed (one of the other shard's is left alone)
  - segment --shard 0/2 and 1/2: together the class maps of one unsharded segment run
  - a manifest line for a photo that fails (a truncated JPEG), with its error; the exit status 65
  - refused with one line and exit 64: --shard 4/4, 1/0, x/2, 1/2/3, env/4 with no index variable,
    SLURM_ARRAY_TASK_ID=4 with env/4, --shard with -o FILE; a manifest that cannot be opened (73)
Under the sanitizers 20 photos instead of 40, and no segment part. Exit 0 = pass, 1 = fail.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import dlref
import serve_util

T = dlref.TMP
expect = dlref.expect
SANITIZED = "asan" in os.environ.get("BUILD_DIR", "") or "asan" in T


def shard_of(name, n):
    """inputs.c's input_shard_of, written again: FNV-1a 64 of the file name, MurmurHash3's fmix64."""
    m = (1 << 64) - 1
    h = 0xcbf29ce484222325
    for b in os.path.basename(name).encode():
        h = ((h ^ b) * 0x100000001b3) & m
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & m
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & m
    h ^= h >> 33
    return h % n


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "AWS_BATCH_JOB_ARRAY_INDEX",
                        "CLOUD_RUN_TASK_INDEX")}
    env.update(extra)
    return env


def deeplab(args, env=None):
    return subprocess.run([dlref.DEEPLAB] + [str(a) for a in args], capture_output=True, text=True,
                          env=env or clean_env())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def manifest(path):
    """The manifest's lines as dicts (every line must be whole JSON)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def photos_of(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def main():
    st = serve_util.small_model()
    nphotos = 20 if SANITIZED else 40
    src = os.path.join(T, "photos")
    os.makedirs(src, exist_ok=True)
    sizes = [(80, 60), (64, 64), (72, 56)]
    for i in range(nphotos):
        w, h = sizes[i % 3]
        img = dlref.photo(w, h, 100 + i)
        if i % 4 == 3:
            img.save(os.path.join(src, f"p{i:03d}.jpg"), quality=90)
        else:
            img.save(os.path.join(src, f"p{i:03d}.png"))
    names = sorted(os.path.splitext(n)[0] + ".png" for n in os.listdir(src))
    inputs = sorted(os.listdir(src))
    run = ["rmbg", "-w", st, "--size", "64", "--threads", "1"]

    # one unsharded run: the reference
    ref = os.path.join(T, "ref")
    t0 = time.time()
    p = deeplab(run + ["-o", ref + "/", src])
    one_run = time.time() - t0
    expect(p.returncode == 0 and photos_of(ref) == names, f"unsharded: {nphotos} outputs in {one_run:.1f} s "
                                                         f"(exit {p.returncode}: {p.stderr.strip()[-200:]})")

    # four shards at once into one folder, two by I/N and two by env/N
    out = os.path.join(T, "out")
    procs = []
    for i in range(4):
        m = os.path.join(T, f"shard{i}.jsonl")
        if i == 2:
            args, env = ["--shard", "env/4"], clean_env(JOB_COMPLETION_INDEX="2")
        elif i == 3:
            args, env = ["--shard", "env/4"], clean_env(SLURM_ARRAY_TASK_ID="3")
        else:
            args, env = ["--shard", f"{i}/4"], clean_env()
        procs.append(subprocess.Popen([dlref.DEEPLAB] + run + args + ["--manifest", m, "-o", out + "/", src],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env))
    errs = [pr.communicate()[1] for pr in procs]
    expect(all(pr.returncode == 0 for pr in procs), f"4 shards at once: all exit 0 ({[pr.returncode for pr in procs]})")
    got = photos_of(out) if os.path.isdir(out) else []
    same = got == names and all(read(os.path.join(out, n)) == read(os.path.join(ref, n)) for n in names)
    expect(same, f"4 shards: the {len(got)} outputs are the unsharded run's {len(names)}, byte for byte")
    lines = [(i, d) for i in range(4) for d in manifest(os.path.join(T, f"shard{i}.jsonl"))]
    written = sorted(os.path.basename(d["input"]) for _, d in lines if d["status"] == "written")
    expect(written == inputs and len(lines) == len(inputs),
           f"manifests: {len(lines)} lines, every photo written exactly once ({len(written)} written)")
    right = all(shard_of(d["input"], 4) == i and d["shard"] == f"{i}/4" and
                d["output"] == os.path.join(out, os.path.splitext(os.path.basename(d["input"]))[0] + ".png") and
                d["seconds"] > 0 and d["time"].endswith("Z") for i, d in lines)
    expect(right, "each photo in the shard of the documented hash of its name, with its output, seconds, time")
    counts = [sum(1 for j, _ in lines if j == i) for i in range(4)]
    expect(all(counts), f"every shard got photos: {counts}")
    summaries = [e.strip().splitlines()[-1] if e.strip() else "" for e in errs]
    expect(all(f"shard {i}/4: {counts[i]} of the {nphotos} photos" in summaries[i] for i in range(4)),
           f"the summaries count the shard's photos: {summaries[2]}")

    # a shard killed midway, then rerun
    out2 = os.path.join(T, "out2")
    m2 = os.path.join(T, "killed.jsonl")
    mine = sorted(n for n in inputs if shard_of(n, 2) == 0)
    proc = subprocess.Popen([dlref.DEEPLAB] + run + ["--shard", "0/2", "--manifest", m2, "-o", out2 + "/", src],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(manifest(m2)) < 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = manifest(m2)
    finals = [n for n in photos_of(out2)]
    expect(proc.returncode == -signal.SIGKILL and 3 <= len(before) < len(mine),
           f"shard 0/2 killed midway: {len(before)} of its {len(mine)} photos done (exit {proc.returncode})")
    expect(all(read(os.path.join(out2, n)) == read(os.path.join(ref, n)) for n in finals) and
           len(finals) >= len(before), f"after SIGKILL: the {len(finals)} outputs under final names are all whole")
    # what the kill left (temporary files of photos being written), and two more: one of this
    # shard's photos, which the rerun removes, and one of the other shard's, which it must not
    left = [n for n in os.listdir(out2) if n.startswith(".") and ".tmp-" in n]
    theirs = next(n for n in inputs if shard_of(n, 2) == 1)
    fake_mine = os.path.join(out2, "." + os.path.splitext(mine[-1])[0] + ".png.tmp-abcdefghij")
    fake_theirs = os.path.join(out2, "." + os.path.splitext(theirs)[0] + ".png.tmp-abcdefghij")
    for f in (fake_mine, fake_theirs):
        with open(f, "wb") as fh:
            fh.write(b"\x89PNG half")
    p = deeplab(run + ["--shard", "0/2", "--manifest", m2, "-o", out2 + "/", src])
    gone = not os.path.exists(fake_mine) and os.path.exists(fake_theirs) and \
        not [n for n in os.listdir(out2) if ".tmp-" in n and n != os.path.basename(fake_theirs)]
    expect(gone and f"removed {len(left) + 1} unfinished" in p.stderr,
           f"rerun: the {len(left)} unfinished files the kill left and this shard's other one removed, the other "
           f"shard's kept ({[ln for ln in p.stderr.splitlines() if 'unfinished' in ln]})")
    after = manifest(m2)[len(before):]
    w = [os.path.basename(d["input"]) for d in before + after if d["status"] == "written"]
    skipped = [d for d in after if d["status"] == "skipped"]
    expect(p.returncode == 0 and f"{len(finals)} skipped" in p.stderr and len(skipped) == len(finals),
           f"rerun: skips the {len(finals)} finished ({p.stderr.strip().splitlines()[-1:]})")
    expect(sorted(w) == mine, f"across both runs each of the shard's {len(mine)} photos written exactly once "
                              f"({len(w)} written lines)")
    got = photos_of(out2)
    want = sorted(os.path.splitext(n)[0] + ".png" for n in mine)
    expect(got == want and all(read(os.path.join(out2, n)) == read(os.path.join(ref, n)) for n in got),
           f"rerun: the shard's {len(got)} outputs are the unsharded ones")

    # segment: two shards give the class maps of one run (the same sharding code: not under the sanitizers)
    if not SANITIZED:
        seg_src = os.path.join(T, "seg_photos")
        os.makedirs(seg_src, exist_ok=True)
        for n in inputs[:8]:
            shutil.copy(os.path.join(src, n), seg_src)
        seg = ["segment", "-w", st, "--size", "32", "--threads", "1"]
        p1 = deeplab(seg + ["-o", os.path.join(T, "seg_ref") + "/", seg_src])
        ps = [deeplab(seg + ["--shard", f"{i}/2", "-o", os.path.join(T, "seg_out") + "/", seg_src]) for i in range(2)]
        ok = p1.returncode == 0 and all(q.returncode == 0 for q in ps) and \
            photos_of(os.path.join(T, "seg_out")) == photos_of(os.path.join(T, "seg_ref")) and \
            all(read(os.path.join(T, "seg_out", n)) == read(os.path.join(T, "seg_ref", n))
                for n in photos_of(os.path.join(T, "seg_ref")))
        expect(ok, "segment --shard 0/2 and 1/2: together the class maps of one unsharded run")

    # a photo that fails gets a line with its error
    bad_src = os.path.join(T, "bad_photos")
    os.makedirs(bad_src, exist_ok=True)
    shutil.copy(os.path.join(src, inputs[0]), bad_src)
    data = read(os.path.join(src, "p003.jpg"))
    with open(os.path.join(bad_src, "broken.jpg"), "wb") as f:
        f.write(data[:len(data) // 2])
    mb = os.path.join(T, "bad.jsonl")
    p = deeplab(run + ["--manifest", mb, "-o", os.path.join(T, "bad_out") + "/", bad_src])
    lines = {os.path.basename(d["input"]): d for d in manifest(mb)}
    expect(p.returncode == 65 and lines.get("broken.jpg", {}).get("status") == "failed" and
           "truncated" in lines["broken.jpg"].get("error", "") and lines.get(inputs[0], {}).get("status") == "written"
           and "shard" not in lines[inputs[0]],
           f"a failed photo: its manifest line has the error; exit 65 ({lines.get('broken.jpg')})")

    # refused
    o = ["-o", os.path.join(T, "never") + "/", src]
    for args, env, text in [(["--shard", "4/4"], None, "from 0 to 3"),
                            (["--shard", "1/0"], None, "takes I/N"),
                            (["--shard", "x/2"], None, "from 0 to 1"),
                            (["--shard", "1/2/3"], None, "takes I/N"),
                            (["--shard"], None, "needs I/N"),
                            (["--shard", "env/4"], None, "none of JOB_COMPLETION_INDEX"),
                            (["--shard", "env/4"], clean_env(SLURM_ARRAY_TASK_ID="4"), "SLURM_ARRAY_TASK_ID is '4'"),
                            (["--shard", "0/2", "-o", os.path.join(T, "one.png"), os.path.join(src, inputs[0])], None,
                             "give -o FOLDER/")]:
        p = deeplab(run + (o if "-o" not in args else []) + args, env=env)
        expect(p.returncode == 64 and text in p.stderr and len(p.stderr.strip().splitlines()) == 1,
               f"refused (64): {p.stderr.strip()}")
    p = deeplab(run + ["--manifest", os.path.join(T, "no", "such", "m.jsonl")] + o)
    nothing = not os.path.exists(os.path.join(T, "never", "p000.png"))
    expect(p.returncode == 73 and "cannot open the manifest" in p.stderr and nothing,
           f"a manifest that cannot be opened: 73, nothing run: {p.stderr.strip()}")
    return dlref.summary("shard checks")


if __name__ == "__main__":
    sys.exit(main())
