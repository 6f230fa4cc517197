#!/usr/bin/env bash
# tools/gpu-deps.sh [DIR] - the build's C libraries (libpng, libjpeg-turbo, zlib), headers and
# static archives only, gathered into DIR (default build-deps/) for a GPU machine that has CUDA
# but neither libpng-dev nor a network:
#
#   here (Debian/Ubuntu with apt):  tools/gpu-deps.sh
#   there:                          DEEPLAB_DEPS=build-deps make gpu-check
#
# Taken from the installed libpng-dev, libjpeg62-turbo-dev and zlib1g-dev when present, else
# downloaded with `apt-get download` and unpacked with dpkg -x (no root needed). Static archives
# only, so the binary needs nothing at run time; about 2 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-deps}
rm -rf "$dir"
mkdir -p "$dir/include" "$dir/lib"
root=/
if ! dpkg -s libpng-dev libjpeg62-turbo-dev zlib1g-dev >/dev/null 2>&1; then
    root=$(mktemp -d)
    (cd "$root" && apt-get download libpng-dev libjpeg62-turbo-dev zlib1g-dev >/dev/null &&
     for f in *.deb; do dpkg -x "$f" .; done)
fi
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
cp "$root"/usr/include/png.h "$root"/usr/include/pngconf.h "$root"/usr/include/pnglibconf.h \
   "$root"/usr/include/zlib.h "$root"/usr/include/zconf.h "$dir/include/"
cp "$root"/usr/include/jpeglib.h "$root"/usr/include/jmorecfg.h "$root"/usr/include/jerror.h \
   "$root/usr/include/$multiarch/jconfig.h" "$dir/include/"
cp -L "$root/usr/lib/$multiarch/libpng16.a" "$dir/lib/libpng.a"
cp -L "$root/usr/lib/$multiarch/libjpeg.a" "$dir/lib/libjpeg.a"
cp -L "$root/usr/lib/$multiarch/libz.a" "$dir/lib/libz.a"
[ "$root" = / ] || rm -rf "$root"
echo "gpu-deps: $(du -sh "$dir" | cut -f1) in $dir/ (include/: png.h, jpeglib.h, zlib.h; lib/: libpng.a, libjpeg.a, libz.a)"
echo "gpu-deps: on the GPU machine: DEEPLAB_DEPS=$dir make gpu-check"
