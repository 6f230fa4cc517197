#!/usr/bin/env python3
"""bench_serve.py - what `deeplab serve` costs over the work itself, and how fast the editor is.

    tools/bench_serve.py [-w W.safetensors] [--runs 5] [--threads 2] [--browser] [--out bench/results]

1. Overhead at 520 px on the CPU: the same photo (693 x 520, so --size 520 resizes nothing) and
   options through POST /v1.0/removebg (size=full, client-side latency with Python's requests,
   the model loaded once) and through `deeplab rmbg` (its wall time minus the model's load, which
   rmbg -v reports); runs interleaved, medians compared. rmbg's first forward pass in a process is
   a cold one (its activations' pages faulted in), the server's are warm, so this comparison
   favours the server; the answer's Server-Timing header (prep, network, cutout: the work, timed
   in the server) gives the overhead in one warm process too: latency minus the work.
2. A session of a 12-megapixel photo (4000 x 3000): the edit the editor makes after a stroke (a
   render with the strokes at preview size, --preview, default 2048 px, as the editor asks at most,
   as a matte, which the editor lays over its copy of the photo)
   and the full-resolution download (a render without preview, PNG), client-side latency.
   With --browser also the editor itself in Chromium (playwright-core from build/npm, as
   tests/test_serve_clients.py installs it): the time from the end of a stroke to the new view.

Without -w a seeded random ResNet-101 is made with torchvision (tests/dlref.py), as
tools/bench_pytorch.py does: timings do not depend on the values. Prints the machine, the load
average, the commit; with --out writes the numbers as JSON there.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPLAB = os.environ.get("DEEPLAB", os.path.join(ROOT, "bin", "deeplab"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("TEST_TMP", tempfile.mkdtemp(prefix="bench-serve-"))
import dlref  # noqa: E402
import requests  # noqa: E402
import serve_util  # noqa: E402


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-w", "--weights")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--preview", type=int, default=2048)
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = os.environ["TEST_TMP"]
    weights = a.weights
    if not weights:
        weights = os.path.join(tmp, "random_r101.safetensors")
        dlref.save_safetensors(weights, dlref.make_model("resnet101", 21, seed=0).state_dict())
    threads = ["--threads", str(a.threads)] if a.threads else []
    photo = os.path.join(tmp, "photo_520.jpg")
    dlref.photo(693, 520, 1).save(photo, quality=92)
    big = os.path.join(tmp, "photo_12mp.jpg")
    dlref.photo(4000, 3000, 2).save(big, quality=92)
    version = subprocess.run([DEEPLAB, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {version}; CPU {dlref_cpu()}; load average before: {loadavg()}")
    res = {"version": version, "cpu": dlref_cpu(), "date": datetime.datetime.now().isoformat(timespec="minutes"),
           "load_before": loadavg()}

    with serve_util.Server(["-w", weights, "--device", "cpu"] + threads + ["--access-log", "none"], name="bench",
                           timeout=300) as s:
        api = s.url + "/v1.0/removebg"
        data = open(photo, "rb").read()
        serve_t, rmbg_t, work_t = [], [], []
        requests.post(api, files={"image_file": ("p.jpg", data)}, data={"size": "full"}, timeout=300)  # warm-up
        for _ in range(a.runs):
            t0 = time.perf_counter()
            r = requests.post(api, files={"image_file": ("p.jpg", data)}, data={"size": "full"}, timeout=300)
            serve_t.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            parts = dict(re.findall(r"(\w+);dur=([0-9.]+)", r.headers.get("Server-Timing", "")))
            work_t.append(sum(float(parts[k]) for k in ("prep", "network", "cutout")) / 1000)
            t0 = time.perf_counter()
            p = subprocess.run([DEEPLAB, "rmbg", "-v", "-w", weights, "--device", "cpu"] + threads +
                               ["-o", os.path.join(tmp, "rmbg.png"), photo], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            load = float(re.search(r"loaded in ([0-9.]+) s", p.stderr).group(1))
            rmbg_t.append(wall - load)
        ms, mr = statistics.median(serve_t), statistics.median(rmbg_t)
        print(f"520 px, {a.runs} runs: serve {1000 * ms:.0f} ms (median; {', '.join(f'{1000 * t:.0f}' for t in serve_t)}), "
              f"rmbg without the model's load {1000 * mr:.0f} ms ({', '.join(f'{1000 * t:.0f}' for t in rmbg_t)}): "
              f"overhead {100 * (ms - mr) / mr:+.1f}%")
        over = [t - w for t, w in zip(serve_t, work_t)]
        mw, mo = statistics.median(work_t), statistics.median(over)
        print(f"520 px, in the server: the work (decode, network, cut-out and encoding, Server-Timing) {1000 * mw:.0f} ms "
              f"median; latency minus the work {1000 * mo:.1f} ms median ({', '.join(f'{1000 * t:.1f}' for t in over)}): "
              f"{100 * mo / mw:.2f}% of the work")
        res["overhead_520"] = {"serve_ms": [1000 * t for t in serve_t], "rmbg_work_ms": [1000 * t for t in rmbg_t],
                               "serve_median_ms": 1000 * ms, "rmbg_median_ms": 1000 * mr,
                               "overhead_percent": 100 * (ms - mr) / mr,
                               "server_work_ms": [1000 * t for t in work_t],
                               "latency_minus_work_ms": [1000 * t for t in over],
                               "latency_minus_work_percent": 100 * mo / mw}

        # a 12-megapixel session: edits at preview size, the full-size download
        t0 = time.perf_counter()
        r = requests.post(s.url + "/v1/sessions", files={"image_file": ("b.jpg", open(big, "rb").read())}, timeout=300)
        made = time.perf_counter() - t0
        sid = r.json()["id"]
        render = f"{s.url}/v1/sessions/{sid}/render"
        edits, downloads = [], []
        for i in range(a.runs + 1):
            strokes = [{"mode": "keep", "radius": 40, "points": [[400 + 100 * i, 500], [2400, 900 + 50 * i]]},
                       {"mode": "erase", "radius": 25, "points": [[1000, 2400], [3100 - 60 * i, 2000]]}]
            t0 = time.perf_counter()
            r = requests.post(render, json={"strokes": strokes, "preview": a.preview, "channels": "matte"}, timeout=300)
            edits.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        for i in range(a.runs):
            t0 = time.perf_counter()
            r = requests.post(render, json={"strokes": strokes, "format": "png"}, timeout=300)
            downloads.append(time.perf_counter() - t0)
            assert r.status_code == 200 and len(r.content) > 1000, r.text
        edits = edits[1:]  # the first builds the session's preview photo
        me, md = statistics.median(edits), statistics.median(downloads)
        print(f"12 MP session (made in {made:.1f} s, network and all): an edit (strokes, preview {a.preview} px) "
              f"{1000 * me:.0f} ms median ({', '.join(f'{1000 * t:.0f}' for t in edits)}); the full-size PNG download "
              f"{md:.2f} s ({', '.join(f'{t:.2f}' for t in downloads)}), {len(r.content) / 1e6:.1f} MB")
        res["session_12mp"] = {"made_s": made, "preview": a.preview, "edit_ms": [1000 * t for t in edits],
                               "edit_median_ms": 1000 * me, "download_s": downloads, "download_median_s": md,
                               "download_bytes": len(r.content)}
        if a.browser:
            res["browser"] = browser(s.url, big, a.runs)
        res["load_after"] = loadavg()
        print(f"# load average after: {loadavg()}")
        s.stop()
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        name = os.path.join(a.out, f"serve-cpu-{res['date'][:16].replace(':', '')}.json")
        json.dump(res, open(name, "w"), indent=1)
        print(f"# written {name}")


def dlref_cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def browser(url, photo, runs):
    """The editor in Chromium: the time from the end of each stroke (the render it asks for) to the
    view redrawn, by the page's own clock (Playwright noticing it adds its polling)."""
    script = r"""
const path = require("path");
const { chromium } = require(path.join(process.argv[2], "playwright-core"));
(async () => {
  const fs = require("fs"), dir = fs.mkdtempSync("/tmp/bench-chromium-");
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: "/usr/bin/chromium", headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"], viewport: { width: 1600, height: 1000 } });
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(process.argv[3] + "/");
  await page.setInputFiles("#file", process.argv[4]);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 300000 });
  await page.click("#tool-keep");
  const box = await page.locator("#view").boundingBox();
  const times = [];
  for (let i = 0; i < Number(process.argv[5]) + 1; i++) {
    const y = box.y + box.height * (0.2 + 0.1 * i);
    await page.mouse.move(box.x + box.width * 0.2, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, y + 20, { steps: 8 });
    await page.mouse.up();
    await page.waitForSelector('body[data-state="ready"]', { timeout: 300000 });
    times.push(await page.evaluate(() => state.lastRenderMs)); // the page's own clock: edit sent -> view drawn
  }
  console.log(JSON.stringify({ times: times.slice(1), preview: await page.evaluate(() => state.result.width) }));
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
})().catch((e) => { console.error(e); process.exit(1); });
"""
    js = os.path.join(os.environ["TEST_TMP"], "bench_editor.js")
    open(js, "w").write(script)
    modules = os.path.join(ROOT, "build", "npm", "node_modules")
    p = subprocess.run(["node", js, modules, url, photo, str(runs)], capture_output=True, text=True, timeout=900)
    if p.returncode:
        print(f"browser: {p.stderr.strip()[-300:]}")
        return None
    r = json.loads(p.stdout.strip().splitlines()[-1])
    med = statistics.median(r["times"])
    print(f"the editor in Chromium (1600x1000 window, preview {r['preview']} px wide): a stroke's end to the new view "
          f"{med:.0f} ms median ({', '.join(map(str, r['times']))})")
    return {"stroke_to_view_ms": r["times"], "median_ms": med, "preview_width": r["preview"]}


if __name__ == "__main__":
    main()
