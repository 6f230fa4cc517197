#!/usr/bin/env bash
# tools/make_readme_pictures.sh PHOTO... - the before/after pictures of README.md's "Background
# removal" section, made by bin/deeplab with the published weights (run `make weights` first).
#
# For every PHOTO (use photos you may publish: your own, or CC0 ones), into docs/pictures/:
#   NAME-strip.jpg     one row: the photo | the overlay (what the model sees, with its legend) |
#                      the cut-out without refinement | the cut-out refined (default), both on a
#                      checkerboard; 360 pixels high
#   NAME-cutout.png    the default cut-out, full size
#   NAME-white.jpg     --decontaminate --bg-color ffffff --crop=24 (a product-photo style result)
# and prints the Markdown to paste into README.md. Needs python3 with Pillow (tools/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DEEPLAB=${DEEPLAB:-bin/deeplab}
WEIGHTS=${DEEPLAB_WEIGHTS:-weights/deeplabv3_resnet101.safetensors}
OUT=docs/pictures
[ $# -gt 0 ] || { echo "usage: $0 PHOTO..." >&2; exit 64; }
[ -x "$DEEPLAB" ] || { echo "$0: $DEEPLAB not built (run make)" >&2; exit 69; }
[ -f "$WEIGHTS" ] || { echo "$0: $WEIGHTS missing (run make weights)" >&2; exit 66; }
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for photo in "$@"; do
    name=$(basename "${photo%.*}")
    "$DEEPLAB" rmbg -w "$WEIGHTS" -v -o "$OUT/$name-cutout.png" "$photo"
    "$DEEPLAB" rmbg -w "$WEIGHTS" --refine none -o "$tmp/coarse.png" "$photo"
    "$DEEPLAB" rmbg -w "$WEIGHTS" --format overlay -o "$tmp/overlay.png" "$photo"
    "$DEEPLAB" rmbg -w "$WEIGHTS" --decontaminate --bg-color ffffff --crop=24 -o "$OUT/$name-white.jpg" "$photo"
    /usr/bin/python3 - "$photo" "$tmp" "$OUT/$name-cutout.png" "$OUT/$name-strip.jpg" <<'EOF'
import sys
from PIL import Image, ImageOps
photo, tmp, cutout, strip = sys.argv[1:]
H = 360
def fit(im):
    return im.resize((round(im.width * H / im.height), H), Image.LANCZOS)
def on_checkerboard(im):
    im = fit(im.convert("RGBA"))
    board = Image.new("RGBA", im.size, (255, 255, 255, 255))
    for y in range(0, im.height, 16):
        for x in range(0, im.width, 16):
            if (x // 16 + y // 16) % 2:
                board.paste((204, 204, 204, 255), (x, y, x + 16, y + 16))
    return Image.alpha_composite(board, im).convert("RGB")
tiles = [fit(ImageOps.exif_transpose(Image.open(photo)).convert("RGB")), fit(Image.open(f"{tmp}/overlay.png").convert("RGB")),
         on_checkerboard(Image.open(f"{tmp}/coarse.png")), on_checkerboard(Image.open(cutout))]
row = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), H), (255, 255, 255))
x = 0
for t in tiles:
    row.paste(t, (x, 0))
    x += t.width + 8
row.save(strip, quality=88)
EOF
    echo "![$name: photo, what the model sees, cut-out without and with edge refinement]($OUT/$name-strip.jpg)"
done
