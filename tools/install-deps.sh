#!/usr/bin/env bash
# tools/install-deps.sh - installs what building and testing deeplab needs on Debian/Ubuntu.
#
#   build: a C compiler, make, libpng, libjpeg(-turbo) and zlib headers (the CUDA toolkit is optional: when nvcc
#          is found, `make` compiles the CUDA sources too)
#   tests: Debian's python3-torchvision (the reference the tests compare with), numpy, Pillow
#
# Already-installed packages are left alone; nothing is downloaded at test time.
set -euo pipefail

packages=(build-essential make libpng-dev libjpeg-dev zlib1g-dev
          python3 python3-numpy python3-pil python3-torch python3-torchvision)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: everything is installed"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
