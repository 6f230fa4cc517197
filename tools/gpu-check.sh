#!/usr/bin/env bash
# tools/gpu-check.sh - the GPU path checked on the machine's own GPU, from a fresh clone:
#
#   1. finds the GPU (nvidia-smi), nvcc and compute-sanitizer
#   2. builds for that GPU's architecture into build-gpu/
#   3. runs the GPU tests (tests/run.sh cuda: test_cuda_index, test_cuda_layers, test_parity_cuda,
#      the cudnn backend's test_cuda_cudnn and test_parity_cuda_cudnn, and any other test with
#      "cuda" in its name)
#   4. runs compute-sanitizer: memcheck (+ leak check) and initcheck over an end-to-end
#      `deeplab segment --device cuda --size 0` on a small random model; memcheck, racecheck and
#      synccheck over the layer tests (DL_TEST_QUICK=1); memcheck over the cudnn backend's layer test
#   5. times the network for the record (deeplab bench --device cuda: the native backend, and the
#      cudnn one in fp32 and tf32; information, never a failure)
#   6. prints a table, writes bench/results/gpu-check-DATE-COMMIT.{md,json}, and copies them with
#      all the logs (gpu-check-logs.tar.gz) to $OUT when that is set
# Exit status 0 only if every step passed; a GPU test that skips counts as a failure here.
#
# Environment:
#   PYTHON=python3        Python with torch, torchvision, numpy, Pillow (default: python3)
#   DEEPLAB_DEPS=dir      libpng and zlib headers/static libraries for machines without libpng-dev:
#                         dir/include and dir/lib (make them elsewhere with tools/gpu-deps.sh)
#   GPU_CHECK_ALL=1       also run the whole test suite with the GPU build
#   GPU_CHECK_COMMIT=sha  the commit to record when the tree has no .git
#   GPU_CHECK_BUDGET=540  seconds for the whole check (each step is cut to what is left)
set -u
cd "$(dirname "$0")/.."
t0=$(date +%s)
budget=${GPU_CHECK_BUDGET:-540}
export PYTHON=${PYTHON:-python3}
work=build-gpu/gpu-check
rm -rf "$work"
mkdir -p "$work"

names=() results=() notes=()
record() { names+=("$1"); results+=("$2"); notes+=("$3"); printf '  %-34s %-5s %s\n' "$1" "$2" "$3"; }
left() { echo $((budget - ($(date +%s) - t0))); }
# limited SECONDS LOG CMD...: runs CMD with its output in LOG, cut to the time left (exit 124).
limited() {
    local lim=$1 log=$2 l
    shift 2
    l=$(left)
    [ "$l" -lt "$lim" ] && lim=$l
    if [ "$lim" -le 5 ]; then echo "gpu-check: out of time budget" >"$log"; return 124; fi
    timeout -k 10 "$lim" "$@" >"$log" 2>&1
}

# ------------------------------------------------------------------ 1. the machine
if ! gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>&1) || [ -z "$gpu" ]; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi: ${gpu:-not found}); this check needs one"
    exit 1
fi
gpu=$(echo "$gpu" | head -n 1)
gpu_name=$(echo "$gpu" | cut -d, -f1 | sed 's/^ *//;s/ *$//')
cap=$(echo "$gpu" | cut -d, -f2 | tr -d ' ')
driver=$(echo "$gpu" | cut -d, -f3 | tr -d ' ')
arch=sm_${cap/./}
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -z "$NVCC" ]; then
    echo "gpu-check: nvcc not found (PATH or /usr/local/cuda/bin): install the CUDA toolkit"
    exit 1
fi
cuda_home=$(dirname "$(dirname "$NVCC")")
cuda_version=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
SANITIZER=$(command -v compute-sanitizer || ls "$cuda_home/bin/compute-sanitizer" 2>/dev/null || true)
commit=${GPU_CHECK_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
if [ -z "${GPU_CHECK_COMMIT:-}" ] && [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit-dirty"
fi
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
echo "gpu-check: $gpu_name ($arch), driver $driver, CUDA $cuda_version ($NVCC), commit $commit, $date_utc"

# libpng and zlib: the C build needs their headers
if [ -n "${DEEPLAB_DEPS:-}" ]; then
    deps=$(cd "$DEEPLAB_DEPS" && pwd)
    export CPATH="$deps/include${CPATH:+:$CPATH}" LIBRARY_PATH="$deps/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ! echo '#include <png.h>
#include <zlib.h>' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
    cat <<EOF
gpu-check: png.h or zlib.h not found: the build needs libpng's and zlib's headers.
  With a package manager here:  apt-get install libpng-dev zlib1g-dev
  Without one (e.g. a lent GPU machine with no network), on a Debian/Ubuntu machine with apt,
  in this repository:           tools/gpu-deps.sh          (makes build-deps/, about 1 MB)
  bring build-deps/ along, then: DEEPLAB_DEPS=build-deps make gpu-check
EOF
    exit 2
fi
if ! "$PYTHON" -c 'import torch, torchvision, numpy, PIL' >/dev/null 2>&1; then
    echo "gpu-check: warning: $PYTHON lacks torch/torchvision/numpy/Pillow: the parity test will fail (set PYTHON=)"
fi

# The cudnn backend needs cudnn.h and cublas_v2.h to build and libcudnn.so.9 / libcublas.so.13 to
# run. Where the toolkit and the system have none, take those of pip's NVIDIA packages (PyTorch's).
for header in cudnn.h cublas_v2.h; do
    if ! echo "#include <$header>" | "$NVCC" -E -x cu - >/dev/null 2>&1; then
        inc=$("$PYTHON" - "$header" <<'EOF' 2>/dev/null
import glob, os, site, sys
for p in site.getsitepackages():
    for h in sorted(glob.glob(os.path.join(p, "nvidia", "**", sys.argv[1]), recursive=True)):
        print(os.path.dirname(h))
        sys.exit()
EOF
        )
        if [ -n "$inc" ]; then
            echo "gpu-check: $header from $inc (its libraries from $(dirname "$inc")/lib)"
            export NVCCFLAGS="${NVCCFLAGS:--O3 -g -lineinfo} -I$inc"
            export LD_LIBRARY_PATH="$(dirname "$inc")/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        else
            echo "gpu-check: warning: no $header for nvcc: the cudnn backend builds as a stub and its tests fail"
        fi
    fi
done

# ------------------------------------------------------------------ 2. build
b0=$(date +%s)
limited 400 "$work/build.log" make -j"$(nproc)" O=build-gpu BIN=build-gpu/bin CUDA=1 CUDA_ARCH="$arch" NVCC="$NVCC" \
    PYTHON="$PYTHON" GIT_COMMIT="$commit"
rc=$?
warnings=$(grep -c -i 'warning' "$work/build.log")
if [ $rc = 0 ]; then
    record "build ($arch)" PASS "$warnings warning line(s), $(($(date +%s) - b0)) s"
else
    record "build ($arch)" FAIL "exit $rc; see build.log"
    tail -n 30 "$work/build.log"
fi
deeplab=$PWD/build-gpu/bin/deeplab

# ------------------------------------------------------------------ 3. GPU tests
if [ $rc = 0 ]; then
    limited 420 "$work/tests.log" env BUILD_DIR=build-gpu DEEPLAB="$deeplab" DEEPLAB_RESULTS="$PWD/$work/parity.json" \
        DEEPLAB_RESULTS_CUDNN="$PWD/$work/parity-cudnn.json" tests/run.sh cuda
    cat "$work/tests.log"
    cp -r build-gpu/test-logs "$work/test-logs" 2>/dev/null
    # every test whose name holds "cuda" (tests/run.sh cuda), the five of this check's own first
    ran=$(grep -E '^(PASS|FAIL|SKIP) ' "$work/tests.log" | awk '{print $2}')
    own='test_cuda_index|test_cuda_layers|test_parity_cuda|test_cuda_cudnn|test_parity_cuda_cudnn'
    for t in ${own//|/ } $(echo "$ran" | grep -vxE "$own"); do
        line=$(grep -E "^(PASS|FAIL|SKIP) +$t " "$work/tests.log")
        status=${line%% *}
        log=$work/test-logs/$t.log
        case "$t" in
        test_parity_cuda)
            note=$("$PYTHON" - "$work/parity.json" <<'EOF' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda x: "n/a" if x is None else f"{x:.2e}"
print(f"max rel {f(r.get('max_rel_torchvision'))} vs torchvision, {f(r.get('max_rel_cpu'))} vs CPU "
      f"({len(r['images'])} images); 520x520: {r.get('gpu_memory_mb_520')} MB GPU")
EOF
            ) ;;
        test_parity_cuda_cudnn)
            note=$("$PYTHON" - "$work/parity-cudnn.json" <<'EOF' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda x: "n/a" if x is None else f"{x:.2e}"
print(f"max rel vs torchvision: fp32 {f(r.get('max_rel_torchvision_fp32'))}, tf32 "
      f"{f(r.get('max_rel_torchvision_tf32'))} ({len(r['images']) // 2} images); 520x520 vs CPU: fp32 "
      f"{f(r.get('rel_cpu_520_fp32'))}, tf32 {f(r.get('rel_cpu_520_tf32'))}")
EOF
            ) ;;
        *) note="$(grep -c '^ok' "$log" 2>/dev/null) checks ok, $(grep -c '^FAIL' "$log" 2>/dev/null) failed" ;;
        esac
        case "$status" in
        PASS) record "$t" PASS "$note" ;;
        SKIP) record "$t" FAIL "skipped on a GPU machine: $(grep -m1 -i skip "$log")" ;;
        FAIL) record "$t" FAIL "$note; see test-logs/$t.log" ;;
        *) record "$t" FAIL "did not run (time budget?)" ;;
        esac
    done
    if [ "${GPU_CHECK_ALL:-0}" = 1 ]; then
        limited 600 "$work/all-tests.log" env BUILD_DIR=build-gpu DEEPLAB="$deeplab" tests/run.sh
        r=$?
        record "whole suite (GPU build)" "$([ $r = 0 ] && echo PASS || echo FAIL)" \
            "$(grep '^tests:' "$work/all-tests.log")"
    fi
fi

# ------------------------------------------------------------------ 4. compute-sanitizer
# sanitize NAME TOOL LOG CMD...: passes when the tool exits 0 and reports no errors.
sanitize() {
    local name=$1 tool=$2 log=$3 extra=()
    shift 3
    [ "$tool" = memcheck ] && extra=(--leak-check full)
    [ "$tool" = racecheck ] && extra=(--racecheck-report hazard)
    limited 240 "$log" "$SANITIZER" --tool "$tool" "${extra[@]}" --error-exitcode 99 "$@"
    local r=$? summary
    summary=$(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | sed 's/^========= //')
    if [ $r = 0 ]; then record "$name" PASS "${summary:-no errors}"
    else record "$name" FAIL "exit $r: ${summary:-see $(basename "$log")}"; tail -n 20 "$log"; fi
}
if [ $rc != 0 ]; then
    :
elif [ -z "$SANITIZER" ]; then
    record "compute-sanitizer" FAIL "not found (PATH or $cuda_home/bin)"
else
    small=$PWD/$work/small
    mkdir -p "$small"
    if TEST_TMP="$small" "$PYTHON" -c '
import sys; sys.path.insert(0, "tests")
import dlref
m = dlref.make_model("resnet50", 3, seed=5)
dlref.save_safetensors(sys.argv[1] + "/model.safetensors", m.state_dict())
dlref.photo(47, 33, 7).save(sys.argv[1] + "/in.png")' "$small" >"$work/small-model.log" 2>&1; then
        e2e=("$deeplab" segment --device cuda --size 0 -w "$small/model.safetensors" -o "$small/out.png"
             "$small/in.png")
        sanitize "memcheck: segment 47x33 (R50)" memcheck "$work/memcheck-e2e.log" "${e2e[@]}"
        sanitize "initcheck: segment 47x33 (R50)" initcheck "$work/initcheck-e2e.log" "${e2e[@]}"
    else
        record "sanitizer model" FAIL "could not make the small model with $PYTHON (see small-model.log)"
    fi
    export DL_TEST_QUICK=1
    sanitize "memcheck: layer tests" memcheck "$work/memcheck-layers.log" build-gpu/tests/test_cuda_layers
    sanitize "racecheck: layer tests" racecheck "$work/racecheck-layers.log" build-gpu/tests/test_cuda_layers
    sanitize "synccheck: layer tests" synccheck "$work/synccheck-layers.log" build-gpu/tests/test_cuda_layers
    sanitize "memcheck: cudnn layer tests" memcheck "$work/memcheck-cudnn.log" build-gpu/tests/test_cuda_cudnn
    unset DL_TEST_QUICK
fi

# ------------------------------------------------------------------ 5. timing, for the record
if [ $rc = 0 ]; then
    if limited 120 "$work/bench.md" "$deeplab" bench --device cuda --size 520 --batch 1,8 --runs 10 --warmup 2; then
        # the table's columns: | backend | path | precision | batch | median ms | ...
        med=$(grep -E '^\| native' "$work/bench.md" |
              awk -F'|' '{gsub(/ /, "", $5); gsub(/ /, "", $6); printf "batch %s: %s ms; ", $5, $6}')
        record "bench 520x520 fp32 (info)" INFO "median ${med%; }"
    else
        record "bench 520x520 fp32 (info)" FAIL "deeplab bench --device cuda failed: see bench.md"
    fi
    limited 120 "$work/bench-layers.md" "$deeplab" bench --device cuda --size 520 --runs 5 --warmup 2 --layers ||
        record "bench --layers (info)" FAIL "see bench-layers.md"
    # the yardstick: convolutions through cuDNN + cuBLAS, true fp32 and TF32 (the algorithm
    # searches happen in the warm-up runs)
    if limited 180 "$work/bench-cudnn.md" "$deeplab" bench --device cuda --size 520 --batch 1,8 --backend cudnn \
        --precision fp32,tf32 --runs 10 --warmup 2; then
        # the table's columns: | backend | path | precision | batch | median ms | ...
        med=$(grep -E '^\| cudnn' "$work/bench-cudnn.md" |
              awk -F'|' '{gsub(/ /, "", $4); gsub(/ /, "", $5); gsub(/ /, "", $6); printf "%s batch %s: %s ms; ", $4, $5, $6}')
        record "bench 520x520 cudnn (info)" INFO "median ${med%; }"
    else
        record "bench 520x520 cudnn (info)" FAIL "deeplab bench --backend cudnn failed: see bench-cudnn.md"
    fi
fi

# ------------------------------------------------------------------ 6. results
overall=PASS
for r in "${results[@]}"; do [ "$r" = FAIL ] && overall=FAIL; done
stamp=$(date -u +%Y%m%d-%H%M)
md=bench/results/gpu-check-$stamp-$commit.md
json=bench/results/gpu-check-$stamp-$commit.json
mkdir -p bench/results
{
    echo "# gpu-check $date_utc: $overall"
    echo
    echo "- GPU: $gpu_name ($arch), driver $driver"
    echo "- CUDA: $cuda_version ($NVCC); compute-sanitizer: ${SANITIZER:-none}"
    echo "- cudnn backend: $(grep -m1 -h '^libraries:' "$work/test-logs/test_cuda_cudnn.log" 2>/dev/null ||
        echo 'libraries not loaded (see test-logs/test_cuda_cudnn.log)')"
    py=$("$PYTHON" -c 'import sys, torch, torchvision as tv
print(sys.version.split()[0], "torch", torch.__version__, "torchvision", tv.__version__)' 2>/dev/null ||
         echo "$PYTHON (no torch)")
    echo "- commit: $commit; host: $(uname -sr), $(nproc) CPUs; Python $py"
    echo
    echo "| step | result | notes |"
    echo "|---|---|---|"
    for i in "${!names[@]}"; do echo "| ${names[$i]} | ${results[$i]} | ${notes[$i]} |"; done
    if [ -s "$work/parity.json" ]; then
        echo
        echo "## Parity per image (max |ours - ref| / max |ref|)"
        echo
        "$PYTHON" - "$work/parity.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda x: "n/a" if x is None else f"{x:.2e}"
print("| case | size | vs torchvision | vs CPU |\n|---|---|---|---|")
for i in r["images"]:
    print(f"| {i['case']} | {i['w']}x{i['h']} | {f(i['rel_torchvision'])} | {f(i['rel_cpu'])} |")
print(f"\none process, batch 2 and changing sizes, cuda vs cpu: {f(r.get('plan_reuse_rel_cpu'))}; "
      f"520x520 ResNet-101 cuda vs cpu: {f(r.get('rel_cpu_520'))}, GPU memory {r.get('gpu_memory_mb_520')} MB")
EOF
    fi
    if [ -s "$work/parity-cudnn.json" ]; then
        echo
        echo "## Parity per image, cudnn backend (max |ours - ref| / max |ref| vs torchvision)"
        echo
        "$PYTHON" - "$work/parity-cudnn.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda x: "n/a" if x is None else f"{x:.2e}"
rows = {}
for i in r["images"]:
    rows.setdefault((i["case"], i["w"], i["h"]), {})[i["precision"]] = i["rel_torchvision"]
print("| case | size | fp32 | tf32 |\n|---|---|---|---|")
for (case, w, h), v in rows.items():
    print(f"| {case} | {w}x{h} | {f(v.get('fp32'))} | {f(v.get('tf32'))} |")
print(f"\none process, batch 2 and changing sizes, vs cpu: fp32 {f(r.get('plan_reuse_rel_cpu_fp32'))}, tf32 "
      f"{f(r.get('plan_reuse_rel_cpu_tf32'))}; 520x520 ResNet-101 vs cpu: fp32 {f(r.get('rel_cpu_520_fp32'))}, "
      f"tf32 {f(r.get('rel_cpu_520_tf32'))}; device memory {r.get('gpu_memory_mb_520_fp32')} MB (fp32)")
EOF
    fi
    if [ -s "$work/bench.md" ]; then
        echo
        sed 's/^## /## Timing: /' "$work/bench.md"
    fi
    if [ -s "$work/bench-cudnn.md" ]; then
        echo
        sed 's/^## /## Timing, cudnn backend: /' "$work/bench-cudnn.md"
    fi
} >"$md"
"$PYTHON" - "$json" "$work/parity.json" "$gpu_name" "$arch" "$driver" "$cuda_version" "$commit" "$date_utc" "$overall" \
    "${#names[@]}" "${names[@]}" "${results[@]}" "${notes[@]}" <<'EOF' || echo "gpu-check: could not write $json"
import json, os, sys
out, parity, gpu, arch, driver, cuda, commit, date, overall, n = sys.argv[1:11]
n = int(n)
rest = sys.argv[11:]
steps = [{"step": rest[i], "result": rest[n + i], "notes": rest[2 * n + i]} for i in range(n)]
doc = {"date": date, "gpu": gpu, "arch": arch, "driver": driver, "cuda": cuda, "commit": commit,
       "overall": overall, "steps": steps}
if os.path.exists(parity) and os.path.getsize(parity):
    doc["parity"] = json.load(open(parity))
parity_cudnn = os.path.join(os.path.dirname(parity), "parity-cudnn.json")
if os.path.exists(parity_cudnn) and os.path.getsize(parity_cudnn):
    doc["parity_cudnn"] = json.load(open(parity_cudnn))
json.dump(doc, open(out, "w"), indent=2)
EOF
tar -czf "$work.tar.gz" -C build-gpu gpu-check 2>/dev/null
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    cp "$md" "$OUT/gpu-check.md"
    [ -f "$json" ] && cp "$json" "$OUT/gpu-check.json"
    cp "$work.tar.gz" "$OUT/gpu-check-logs.tar.gz"
fi

echo
echo "gpu-check: $gpu_name ($arch), driver $driver, CUDA $cuda_version, commit $commit"
printf '%-34s %-5s %s\n' step result notes
for i in "${!names[@]}"; do printf '%-34s %-5s %s\n' "${names[$i]}" "${results[$i]}" "${notes[$i]}"; done
echo "overall: $overall in $(($(date +%s) - t0)) s; results in $md, logs in $work/${OUT:+ and \$OUT}"
[ $overall = PASS ]
