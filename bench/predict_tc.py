#!/usr/bin/env python3
"""predict_tc.py - what the tensor-core path should take on an H100/H200, layer group by layer group,
written before any GPU run (bench/RESULTS.md keeps its output, issue 12).

    bench/predict_tc.py [--size 520] [--batch 1] [--sms 132] [--depth 101] [--rate 440] [--bw 3.0]

For every convolution of DeepLabV3-ResNet-101 (model.c's list) it takes the configuration that
layers/conv2d_tc.cu's conv2d_tc_choose picks (the same model, ported here: tiles 128x128, 128x64,
64x64 at efficiencies 1, 0.85, 0.7; splits of K while the tiles leave SMs idle) and predicts

  compute  = waves x tile time: ceil(tiles x splits / SMs) blocks on the busiest SM, each
             BM x BN x (K / splits) multiply-adds (the taps a tile skips left out) at the tile's
             share of RATE (the whole GPU's bf16 rate for mma.sync at full occupancy), per SM
  memory   = compulsory bytes (input, output, residual, weights once, in 16-bit; a split's fp32
             partial sums written and read) / BW
  layer    = max(compute, memory) + 2 us per launch (a CUDA graph's node-to-node gap, measured
             elsewhere at 1-3 us on Hopper)

RATE defaults to 440 TFLOP/s: ~55% of the 798 TFLOP/s that an 8192^3 bf16 matmul reaches on these
machines (KINDS.md), what mma.sync kernels get on Hopper (PERFORMANCE.md: "about 60% of the wgmma
peak"). BW defaults to 3.0 TB/s (an H100's copy rate; the H200 measured 4.3). Nothing here is a
measurement: it is the number a GPU run is to be compared with.
"""
import argparse
import math

EFF = {"128x128": 1.0, "128x64": 0.85, "64x64": 0.7}
TILES = [("128x128", 128, 128), ("128x64", 128, 64), ("64x64", 64, 64)]


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def layers(size, depth):
    """(name, group, C, OC, k, stride, dilation, H_in, residual) of every conv, in model.c's order."""
    L = []
    h = out_size(size, 7, 2, 3, 1)
    L.append(("backbone.conv1", "stem 7x7/2", 3, 64, 7, 2, 1, size, False))
    h = out_size(h, 3, 2, 1, 1)  # maxpool
    inplanes, dilation = 64, 1
    blocks = [3, 4, 23 if depth == 101 else 6, 3]
    for li in range(4):
        planes = 64 << li
        stride = 1 if li == 0 else 2
        prev = dilation
        if li >= 2:
            dilation *= stride
            stride = 1
        for b in range(blocks[li]):
            s = stride if b == 0 else 1
            d = prev if b == 0 else dilation
            pre = f"backbone.layer{li + 1}.{b}"
            L.append((pre + ".conv1", "1x1", inplanes, planes, 1, 1, 1, h, False))
            g3 = "3x3 layer1/2" if li < 2 else "3x3 dilated (layer3/4)"
            L.append((pre + ".conv2", g3, planes, planes, 3, s, d, h, False))
            h2 = out_size(h, 3, s, d, d)
            if b == 0:
                L.append((pre + ".downsample.0", "1x1", inplanes, planes * 4, 1, s, 1, h, False))
            L.append((pre + ".conv3", "1x1 + residual", planes, planes * 4, 1, 1, 1, h2, True))
            h = h2
            inplanes = planes * 4
    L.append(("classifier.0.convs.0.0", "ASPP 1x1 + project + head", 2048, 256, 1, 1, 1, h, False))
    for i, r in enumerate((12, 24, 36)):
        L.append((f"classifier.0.convs.{i + 1}.0", f"ASPP 3x3 rate {r}", 2048, 256, 3, 1, r, h, False))
    L.append(("classifier.0.project.0", "ASPP 1x1 + project + head", 1024, 256, 1, 1, 1, h, False))
    L.append(("classifier.1", "ASPP 1x1 + project + head", 256, 256, 3, 1, 1, h, False))
    L.append(("classifier.4", "ASPP 1x1 + project + head", 256, 21, 1, 1, 1, h, False))
    return L


def valid_taps(tile_rows, P_img, OH, OW, H, k, s, pad, d, batch):
    """Tap-blocks a tile of tile_rows pixels runs, summed over the tiles (conv2d_tc.cu's rule: a tap
    is skipped when no row of the tile's row range reads inside the map; columns only for one-row
    tiles). Returns (sum over tiles of taps run, number of tiles)."""
    P = batch * P_img
    total, tiles = 0, 0
    for m0 in range(0, P, tile_rows):
        last = min(m0 + tile_rows, P) - 1
        na, nb = m0 // P_img, last // P_img
        oy0, oy1, ox0, ox1 = 0, OH - 1, 0, OW - 1
        if na == nb:
            ra, rb = m0 - na * P_img, last - nb * P_img
            oy0, oy1 = ra // OW, rb // OW
            if oy0 == oy1:
                ox0, ox1 = ra - oy0 * OW, rb - oy1 * OW
        ry = sum(1 for ky in range(k) if any(0 <= o * s - pad + ky * d < H for o in range(oy0, oy1 + 1)))
        rx = sum(1 for kx in range(k) if any(0 <= o * s - pad + kx * d < H for o in range(ox0, ox1 + 1)))
        total += ry * rx
        tiles += 1
    return total, tiles


def choose(P, OC, kb, sms):
    """conv2d_tc_choose: (tile, bm, bn, splits)."""
    byte_macs = 2e12 * sms / 3e12 / 3.0
    best, best_cost = ("64x64", 64, 64, 1), 1e300
    for name, bm, bn in TILES:
        tiles = math.ceil(P / bm) * math.ceil(OC / bn)
        s = 1
        while s <= 16 and s * 4 <= kb:
            if s > 1 and (tiles >= sms or 4.0 * s * P * OC > 32e6):
                break
            cost = math.ceil(tiles * s / sms) * bm * bn * (32.0 * kb / s) / EFF[name]
            if s > 1:
                cost += byte_macs * 8.0 * s * P * OC / sms
            if cost < best_cost * 0.98:
                best_cost, best = cost, (name, bm, bn, s)
            s = s + 1 if s < 4 else s * 2
    return best


def predict(size, batch, sms, depth, rate, bw):
    per_sm_mac = rate * 1e12 / 2 / sms  # multiply-adds per second per SM at a 128x128 tile's efficiency
    rows = []
    for name, group, C, OC, k, s, d, H, res in layers(size, depth):
        pad = k // 2 * d
        OH = out_size(H, k, s, pad, d)
        P_img = OH * OH
        P = batch * P_img
        Cp = (C + 7) // 8 * 8
        generic = Cp % 32 != 0
        kb = (k * k * Cp + 31) // 32 if generic else k * k * (Cp // 32)
        if generic:
            tile, bm, bn, splits = "64x64", 64, 64, 1
        else:
            tile, bm, bn, splits = choose(P, OC, kb, sms)
        macs_nominal = P * OC * C * k * k
        mtiles, ntiles = math.ceil(P / bm), math.ceil(OC / bn)
        if k > 1 and not generic:
            taps_run, _ = valid_taps(bm, P_img, OH, OH, H, k, s, pad, d, batch)
        else:
            taps_run = mtiles * k * k
        avg_taps = taps_run / mtiles
        kblocks = kb if generic else avg_taps * (Cp // 32)
        per_block = bm * bn * 32 * kblocks / splits
        waves = math.ceil(mtiles * ntiles * splits / sms)
        compute = waves * per_block / (per_sm_mac * EFF[tile])
        byts = 2 * (batch * H * H * max(C, 8) + P * OC * (2 if res else 1) + OC * C * k * k)
        if splits > 1:
            byts += 4 * 2 * splits * P * OC
        memory = byts / (bw * 1e12)
        t = max(compute, memory) + 2e-6 + (2e-6 if splits > 1 else 0)
        skipped = 1 - avg_taps / (k * k) if k > 1 else 0
        rows.append(dict(name=name, group=group, gflop=2 * macs_nominal / 1e9, mb=byts / 1e6, tile=tile, splits=splits,
                         blocks=mtiles * ntiles * splits, waves=waves, fill=mtiles * ntiles * splits / (waves * sms),
                         skipped=skipped, compute_us=compute * 1e6, memory_us=memory * 1e6, us=t * 1e6))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=520)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--depth", type=int, default=101)
    ap.add_argument("--rate", type=float, default=440, help="TFLOP/s of mma.sync bf16 at full occupancy")
    ap.add_argument("--bw", type=float, default=3.0, help="TB/s")
    a = ap.parse_args()
    rows = predict(a.size, a.batch, a.sms, a.depth, a.rate, a.bw)
    groups = {}
    for r in rows:
        g = groups.setdefault(r["group"], dict(n=0, gflop=0, mb=0, us=0, compute=0, memory=0, cfg=set(), fill=[], skip=[]))
        g["n"] += 1
        g["gflop"] += r["gflop"]
        g["mb"] += r["mb"]
        g["us"] += r["us"]
        g["compute"] += r["compute_us"]
        g["memory"] += r["memory_us"]
        g["cfg"].add(r["tile"] + (f"/split{r['splits']}" if r["splits"] > 1 else ""))
        g["fill"].append(r["fill"])
        g["skip"].append(r["skipped"])
    total_us = sum(r["us"] for r in rows) + 25  # + the non-conv layers: input, pools, outputs (~25 us by bytes)
    print(f"### bf16, {a.size}x{a.size}, batch {a.batch}, {a.sms} SMs, mma.sync at {a.rate:g} TFLOP/s, {a.bw:g} TB/s\n")
    print("| group | convs | GFLOP (nominal, batch) | MB moved | tiles (splits) | last-wave fill | taps skipped | "
          "compute us | memory us | predicted us | share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, g in groups.items():
        print(f"| {name} | {g['n']} | {g['gflop']:.1f} | {g['mb']:.0f} | {', '.join(sorted(g['cfg']))} | "
              f"{100 * min(g['fill']):.0f}-{100 * max(g['fill']):.0f}% | {100 * sum(g['skip']) / len(g['skip']):.0f}% | "
              f"{g['compute']:.0f} | {g['memory']:.0f} | {g['us']:.0f} | {100 * g['us'] / total_us:.1f}% |")
    gflop = sum(r["gflop"] for r in rows)
    print(f"| non-convolution layers (input, pools, outputs) | | | | | | | | | 25 | {100 * 25 / total_us:.1f}% |")
    print(f"| **total** | {len(rows)} | {gflop:.1f} | {sum(r['mb'] for r in rows):.0f} | | | | | | **{total_us:.0f}** | |")
    print(f"\npredicted: {total_us / 1e3:.3f} ms per forward of {a.batch}, {total_us / 1e3 / a.batch:.3f} ms per image, "
          f"{a.batch / total_us * 1e6:.0f} images/s, {gflop / total_us * 1e3:.0f} TFLOP/s nominal")


if __name__ == "__main__":
    main()
