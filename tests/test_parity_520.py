"""test_parity_520.py - the default pipeline at --size 520 against torchvision's preset.

An 800x600 photo goes through torchvision's own preset for the published weights
(DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1.transforms(): Pillow resize of the shorter
side to 520, then normalise) and a seeded random ResNet-101; bin/deeplab runs the same photo with
its defaults. Checks:
  - the class maps at network resolution (693x520) agree on at least 99.5% of pixels
  - the full-resolution class map has the photo's size
  - -v prints the forward time and the peak memory, and the peak stays under 1.2 GB
"""
import os
import re
import sys

import numpy as np
from PIL import Image
from torchvision.models.segmentation import DeepLabV3_ResNet101_Weights

import dlref

expect = dlref.expect


def main():
    model = dlref.make_model("resnet101", 21, seed=11)
    st = os.path.join(dlref.TMP, "r101.safetensors")
    dlref.save_safetensors(st, model.state_dict())
    img = dlref.photo(800, 600, seed=12)
    png = os.path.join(dlref.TMP, "photo.png")
    img.save(png)

    preset = DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1.transforms()
    ref = dlref.reference_logits(model, preset(img).unsqueeze(0))

    npy, seg = os.path.join(dlref.TMP, "logits.npy"), os.path.join(dlref.TMP, "seg.png")
    p = dlref.run(["segment", "-v", "-w", st, "--save-logits", npy, "-o", seg, png])
    print(p.stderr, end="")
    ours = np.load(npy)
    expect(ours.shape == ref.shape, f"network input size: ours {ours.shape[2:]}, torchvision {ref.shape[2:]}")
    if ours.shape == ref.shape:
        agree = float((ours.argmax(1) == ref.argmax(1)).mean())
        rel, _, _, _ = dlref.compare_logits(ours, ref)
        expect(agree >= 0.995, f"class maps agree on {100 * agree:.3f}% of pixels (need 99.5%); "
                               f"logits max rel error {rel:.2e}")
    full = Image.open(seg)
    expect(full.size == img.size, f"full-resolution class map is {full.size[0]}x{full.size[1]}")

    t = re.search(r"forward:\s+([0-9.]+) s", p.stderr)
    mem = re.search(r"peak resident ([0-9]+) MB", p.stderr)
    expect(t is not None, f"-v prints the forward time ({t.group(1) if t else 'missing'} s)")
    expect(mem is not None and int(mem.group(1)) < 1200,
           f"-v prints the peak memory, under 1200 MB ({mem.group(1) if mem else 'missing'} MB)")
    return dlref.summary("checks")


if __name__ == "__main__":
    sys.exit(main())
