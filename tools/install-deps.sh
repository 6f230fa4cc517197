#!/usr/bin/env bash
# tools/install-deps.sh - installs what building and testing deeplab needs on Debian/Ubuntu.
#
#   build: a C compiler, make, libpng, libjpeg(-turbo) and zlib headers (the CUDA toolkit is optional: when nvcc
#          is found, `make` compiles the CUDA sources too)
#   serve: libmicrohttpd (HTTP) and libcurl (image_url) headers for `deeplab serve`
#   tests: Debian's python3-torchvision (the reference the tests compare with), numpy, Pillow;
#          for the server's tests curl, python3-requests, chromium (the editor in a real browser),
#          Node and npm (the remove.bg client and playwright-core, installed pinned by the test);
#          for the scaling tests nginx (a load balancer in front of replicas, started by the test
#          on loopback ports) and python3-yaml (deploy/'s Kubernetes files)
#
# Already-installed packages are left alone; nothing is downloaded at test time.
set -euo pipefail

packages=(build-essential make pkg-config libpng-dev libjpeg-dev zlib1g-dev libmicrohttpd-dev libcurl4-openssl-dev
          python3 python3-numpy python3-pil python3-torch python3-torchvision
          curl python3-requests chromium nodejs npm nginx python3-yaml)

missing=()
for p in "${packages[@]}"; do
    # Node and npm may come from elsewhere than Debian (NodeSource, nvm): found on PATH is enough
    case "$p" in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
    # any of Debian's nginx flavours (nginx, nginx-light, nginx-core) will do
    [ "$p" = nginx ] && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } && continue
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
