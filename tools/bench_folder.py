#!/usr/bin/env python3
"""tools/bench_folder.py - is the I/O of `deeplab rmbg -o DIR/ FOLDER` hidden behind the network?

Makes a folder of photo-like 1920x1080 JPEGs (smooth backgrounds, overlapping shapes, noise;
quality 90; not kept in the repository), then runs `deeplab bench --folder` on it: pure
inference at the photos' network size (924x520 at --size 520) against rmbg over the folder on
the same model (random ResNet-101 weights unless -w), and prints both and their ratio. The
issue's bars: on a GPU the folder's throughput is at least 80% of pure inference; on a CPU the
folder's time is within 10% of the sum of the inference times.

    tools/bench_folder.py --photos 200 --device cuda          # the GPU measurement
    tools/bench_folder.py --photos 12 --device cpu            # a CPU takes ~10 s per photo
    tools/bench_folder.py ... --record                        # also bench/results/folder-*.json

Needs numpy and Pillow (not PyTorch). The photos are cached in --dir (default
/tmp/deeplab-bench-photos-WxH), and made again only when missing.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photo(w, h, seed):
    """As tests/dlref.py's photo(): a smooth background, six shapes, noise (numpy only)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / max(w - 1, 1) + y / max(h - 1, 1)) / 2
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
        mask = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
        img[mask] = rng.uniform(0, 255, 3) + 20 * np.sin(x[mask] / rng.uniform(2, 9))[:, None]
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--size", type=int, default=520, help="network shorter side, as rmbg --size")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5, help="timed pure-inference runs")
    ap.add_argument("--io-threads", type=int, default=0, help="rmbg's decode/encode threads (0: its default)")
    ap.add_argument("-w", "--weights", help="safetensors weights (default: random ResNet-101)")
    ap.add_argument("--dir", help="where the photos are made (kept between runs)")
    ap.add_argument("--deeplab", default=os.environ.get("DEEPLAB", os.path.join(ROOT, "bin", "deeplab")))
    ap.add_argument("--record", action="store_true", help="write bench/results/folder-DEVICE-DATE.json")
    ap.add_argument("--note", default="", help="recorded with the result (machine state, ...)")
    a = ap.parse_args()

    folder = a.dir or f"/tmp/deeplab-bench-photos-{a.width}x{a.height}"
    os.makedirs(folder, exist_ok=True)
    for i in range(a.photos):
        f = os.path.join(folder, f"photo{i:04d}.jpg")
        if not os.path.exists(f):
            photo(a.width, a.height, 1000 + i).save(f, quality=90)
    extra = sorted(n for n in os.listdir(folder) if n.startswith("photo") and n >= f"photo{a.photos:04d}")
    if extra:
        sys.exit(f"bench_folder: {folder} holds more than {a.photos} photos ({extra[0]}...): use another --dir")
    print(f"bench_folder: {a.photos} photos of {a.width}x{a.height} in {folder}", file=sys.stderr)

    cmd = [a.deeplab, "bench", "--folder", folder, "--size", str(a.size), "--device", a.device, "--batch",
           str(a.batch), "--runs", str(a.runs)]
    if a.io_threads:
        cmd += ["--io-threads", str(a.io_threads)]
    if a.weights:
        cmd += ["-w", a.weights]
    p = subprocess.run(cmd + ["--json"], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(p.returncode)
    r = json.loads(p.stdout)
    r["note"] = a.note
    r["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    r["load_average"] = os.getloadavg()
    print(f"| {r['date'][:10]} | {r['device']} | {r['cpu'] if r['device'] == 'cpu' else ''} | {r['photos']} x "
          f"{a.width}x{a.height} | {r['network_size'][0]}x{r['network_size'][1]} | {r['batch']} | "
          f"{r['inference_median_s_per_image']:.3f} s | {r['folder_seconds']:.1f} s | "
          f"{100 * r['throughput_ratio']:.1f}% | {r['folder_over_inference_sum']:.3f} | {r['commit']} |")
    if a.record:
        out = os.path.join(ROOT, "bench", "results",
                           f"folder-{r['device']}-{r['date'][:16].replace(':', '')}-{r['commit']}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(r, f, indent=2)
        print(f"bench_folder: recorded {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
