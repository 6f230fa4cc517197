#!/usr/bin/env bash
# tools/gpu-bench.sh - the GPU measurements that go into bench/RESULTS.md, after `make gpu-check`
# has passed (run it on the same GPU machine, in a second call; it builds build-gpu/ the same way
# when that is not there):
#
#   1. PyTorch and deeplab side by side on the GPU (tools/bench_pytorch.py --device cuda: the
#      baselines of shared/PERFORMANCE.md, then deeplab's native and cudnn backends, fp32 and tf32,
#      batch 1 and 8, logits checked first)          -> bench/results/gpu_*.json (issue 4)
#   2. rmbg over 200 1080p JPEGs against pure inference, batch 1 and 4
#      (tools/bench_folder.py --device cuda --record) -> bench/results/folder-cuda-*.json (issue 5)
#
# Each step is information, cut to its share of GPU_BENCH_BUDGET seconds (default 540); every
# result and log is copied to $OUT when that is set. Environment: PYTHON (with torch built for
# CUDA, torchvision, numpy, Pillow), DEEPLAB_DEPS and GPU_CHECK_COMMIT as for gpu-check,
# GPU_BENCH_COMPILE=1 to add the torch.compile baseline (slow to compile).
set -u
cd "$(dirname "$0")/.."
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-bench: no NVIDIA GPU here (nvidia-smi -L fails); these measurements need one"
    exit 1
fi
PYTHON=${PYTHON:-python3}
budget=${GPU_BENCH_BUDGET:-540}
t0=$(date +%s)
export DEEPLAB=$PWD/build-gpu/bin/deeplab
log=build-gpu/gpu-bench
mkdir -p "$log" bench/results
if [ ! -x "$DEEPLAB" ]; then # a fresh machine: build as gpu-check does
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
    if [ -n "${DEEPLAB_DEPS:-}" ]; then
        deps=$(cd "$DEEPLAB_DEPS" && pwd)
        export CPATH="$deps/include${CPATH:+:$CPATH}" LIBRARY_PATH="$deps/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    fi
    echo "gpu-bench: building build-gpu/ for sm_$cap ..."
    make -j"$(nproc)" O=build-gpu BIN=build-gpu/bin CUDA=1 CUDA_ARCH="sm_$cap" \
        ${GPU_CHECK_COMMIT:+GIT_COMMIT=$GPU_CHECK_COMMIT} >"$log/build.log" 2>&1 ||
        { echo "gpu-bench: build failed: see $log/build.log"; tail -5 "$log/build.log"; exit 1; }
fi
left() { echo $((budget - ($(date +%s) - t0))); }
status=0

compile=(--no-compile)
[ "${GPU_BENCH_COMPILE:-0}" = 1 ] && compile=()
echo "gpu-bench: PyTorch vs deeplab on the GPU ..."
if timeout -k 10 $(($(left) * 6 / 10)) "$PYTHON" tools/bench_pytorch.py --device cuda --batch 1,8 \
    --backends native,cudnn --precisions fp32,tf32 "${compile[@]}" --out bench/results >"$log/pytorch.md" 2>"$log/pytorch.err"; then
    cat "$log/pytorch.md"
else
    echo "gpu-bench: bench_pytorch.py failed (exit $?): see $log/pytorch.err"; tail -5 "$log/pytorch.err"; status=1
fi

for batch in 1 4; do
    share=$([ $batch = 1 ] && echo 2 || echo 1) # batch 1 gets half of what is left, batch 4 the rest
    echo "gpu-bench: folder of 200 photos, batch $batch ..."
    if timeout -k 10 $(($(left) / share)) "$PYTHON" tools/bench_folder.py --photos 200 --device cuda \
        --batch $batch --deeplab "$DEEPLAB" --record >"$log/folder-b$batch.md" 2>"$log/folder-b$batch.err"; then
        tail -3 "$log/folder-b$batch.md"
    else
        echo "gpu-bench: bench_folder.py --batch $batch failed (exit $?): see $log/folder-b$batch.err"
        tail -5 "$log/folder-b$batch.err"; status=1
    fi
done

if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    cp -r "$log" "$OUT/gpu-bench-logs"
    cp bench/results/gpu_*.json bench/results/folder-cuda-*.json "$OUT/" 2>/dev/null
fi
echo "gpu-bench: done in $(($(date +%s) - t0)) s; results in bench/results/${OUT:+ and \$OUT}"
exit $status
