#!/usr/bin/env bash
# tools/get_weights.sh [resnet101|resnet50] [--from FILE.pth]
#
# Gets torchvision's published DeepLabV3 weights (COCO subset, 20 VOC classes + background) and
# converts them for the engine:
#   weights/deeplabv3_resnet101_coco-586e9e4e.pth  ->  weights/deeplabv3_resnet101.safetensors
#   weights/deeplabv3_resnet50_coco-cd0a2569.pth   ->  weights/deeplabv3_resnet50.safetensors
# The 8 hex digits in a file name are the start of its SHA-256, checked before converting.
# A .pth already in weights/ is used when it verifies; --from FILE.pth converts a copy you
# downloaded elsewhere (no network needed). Nothing you made is ever removed or overwritten,
# except the .safetensors output, which this script owns.
#
# Exit status: 0 done, 64 bad arguments, 65 checksum mismatch, 69 download impossible,
# other: the failing command's.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "get_weights: $*" >&2; }

model=resnet101
from=
while [ $# -gt 0 ]; do
    case "$1" in
        resnet101|resnet50) model=$1 ;;
        --from) [ $# -ge 2 ] || { say "--from needs a file"; exit 64; }; from=$2; shift ;;
        -h|--help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) say "unknown argument '$1' (expected resnet101, resnet50 or --from FILE.pth)"; exit 64 ;;
    esac
    shift
done

case $model in
    resnet101) pth=deeplabv3_resnet101_coco-586e9e4e.pth ;;
    resnet50) pth=deeplabv3_resnet50_coco-cd0a2569.pth ;;
esac
url=https://download.pytorch.org/models/$pth
want=${pth%.pth}; want=${want##*-}          # the 8 hex digits
out=weights/deeplabv3_$model.safetensors
deeplab=${DEEPLAB:-bin/deeplab}

sha256() {
    if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -c1-64
    else shasum -a 256 "$1" | cut -c1-64; fi
}

verified() { [ "$(sha256 "$1" | cut -c1-8)" = "$want" ]; }

offline_help() {
    say "download $url on a machine with network access, then either"
    say "  put it in weights/ as $pth and rerun tools/get_weights.sh $model, or"
    say "  run tools/get_weights.sh $model --from /path/to/$pth"
}

# Downloads $url to weights/$pth through a temporary file that appears under its name only
# once complete and verified.
download() {
    local part
    part=$(mktemp "weights/.$pth.part-XXXXXX")
    trap 'rm -f "$part"' EXIT
    trap 'rm -f "$part"; exit 130' INT TERM
    say "downloading $url"
    local ok=1
    if command -v curl >/dev/null; then
        local quiet=-sS; [ -t 2 ] && quiet=--progress-bar
        curl -fL $quiet --retry 2 --connect-timeout 20 -o "$part" "$url" || ok=0
    elif command -v wget >/dev/null; then
        wget -O "$part" "$url" || ok=0
    else
        say "neither curl nor wget is installed"
        ok=0
    fi
    if [ $ok = 0 ]; then
        say "cannot download $url (no network?)"
        offline_help
        exit 69
    fi
    if ! verified "$part"; then
        say "downloaded file has SHA-256 $(sha256 "$part"), expected it to start with $want: try again"
        exit 65
    fi
    chmod "$(printf %o $((0666 & ~0$(umask))))" "$part"   # mktemp made it private
    mv "$part" "weights/$pth"
    trap - EXIT INT TERM
}

if [ -n "$from" ]; then
    [ -f "$from" ] || { say "$from: no such file"; exit 66; }
    src=$from
elif [ -f "weights/$pth" ]; then
    src=weights/$pth
else
    download
    src=weights/$pth
fi

if ! verified "$src"; then
    say "$src: SHA-256 $(sha256 "$src") does not start with $want: not torchvision's $pth"
    say "(a file of your own converts with: $deeplab convert $src $out)"
    exit 65
fi
say "$src: SHA-256 verified ($want...)"

if [ -f "$out" ] && [ "$out" -nt "$src" ]; then
    say "$out is up to date"
    exit 0
fi
if [ ! -x "$deeplab" ]; then
    [ -z "${DEEPLAB:-}" ] || { say "$deeplab: not found (DEEPLAB is set)"; exit 66; }
    say "building $deeplab"
    make bin/deeplab >&2
fi
"$deeplab" convert "$src" "$out"
