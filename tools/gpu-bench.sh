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
#
# tools/gpu-bench.sh --tc (make gpu-bench-tc) - the tensor-core path (issue 12), checked and
# measured in one go on a fresh GPU machine, within GPU_BENCH_BUDGET seconds (default 480 here:
# one call of a lent H100/H200, leaving a 15-minute lease time to start the machine and, once,
# for a shorter second call):
#
#   1. build for the GPU into build-gpu/ (as gpu-check does); ptxas's registers, spills and shared
#      memory of the tensor-core kernels, and their tensor-core instructions (HMMA, LDSM, LDGSTS)
#      counted in the SASS; the GPU's measured mma.sync peak per precision (tests/tool_gpu_peak)
#   2. the checks, first: test_cuda_warp (ldmatrix and mma.sync fragments against the PTX ISA's
#      tables, on the hardware), test_cuda_layers (every tensor-core kernel, tile and split against
#      the CPU), test_parity_cuda_tc (tf32, fp16, bf16 against torchvision)
#   3. tools/bench_pytorch.py --verdict: PyTorch B0-B3 (B4 torch.compile in bf16 while time is
#      left) and deeplab fp32/tf32/fp16/bf16 side by side, each precision's logits checked first;
#      issue 12's bars judged on bf16's device times: batch 1 <= 1.5 ms, batch 8 >= 700 images/s,
#      faster than every PyTorch row of its batch
#   4. deeplab bench --layers in bf16 (and fp16 while 150 s are left) at 520x520, batch 1 and 8:
#      every layer's time, TFLOP/s, share of the GPU's measured mma peak, and its kernel
#   5. with the time left, compute-sanitizer racecheck and memcheck over the tensor-core layer
#      checks (DL_TEST_TC_ONLY, DL_TEST_QUICK)
#   6. a summary table last; bench/results/gpu-tc-DATE-COMMIT.{md,json}; in $OUT: gpu-tc.md,
#      gpu-tc.json, the bench JSON, and gpu-tc-logs.tar.gz with every log
# Exit status 0 only when every check passed and every bar was met.
set -u
cd "$(dirname "$0")/.."
mode=${1:-}
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-bench: no NVIDIA GPU here (nvidia-smi -L fails); these measurements need one"
    exit 1
fi
PYTHON=${PYTHON:-python3}
budget=${GPU_BENCH_BUDGET:-$([ "$mode" = --tc ] && echo 480 || echo 540)}
t0=$(date +%s)
export DEEPLAB=$PWD/build-gpu/bin/deeplab
log=build-gpu/gpu-bench
mkdir -p "$log" bench/results
# ------------------------------------------------------------------ --tc: issue 12 in one call
tc_mode() {
    local w=$log/tc commit gpu arch names=() results=() notes=() nvcc
    mkdir -p "$w"
    export PYTHON
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    record() { names+=("$1"); results+=("$2"); notes+=("$3"); printf '  %-40s %-5s %s\n' "$1" "$2" "$3"; }
    cut_to() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $((l > 5 ? l : 5)); }
    gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | head -n 1)
    arch=sm_$(echo "$gpu" | cut -d, -f2 | tr -d ' .')
    commit=${GPU_CHECK_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
    echo "gpu-bench --tc: $gpu; nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'); commit $commit"
    nvidia-smi >"$w/nvidia-smi.txt" 2>&1
    "$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
torch.backends.cudnn.version(), "torchvision", torchvision.__version__)' >"$w/python.txt" 2>&1

    # 1. what the compiler made of the tensor-core kernels
    if [ -f "$log/build.log" ]; then
        record "build ($arch, build-gpu/)" PASS "$(grep -c -i warning "$log/build.log") warning line(s) (build.log)"
    else
        record "build ($arch, build-gpu/)" PASS "already built (build-gpu/bin/deeplab was there)"
    fi
    "$nvcc" -O3 -std=c++17 -arch="$arch" -Xptxas -v -D_GNU_SOURCE -DDL_HAVE_CUDA=1 -Ibase -Ilayers -c layers/conv2d_tc.cu \
        -o "$w/conv2d_tc.o" >"$w/ptxas.log" 2>&1
    local regs spills sass
    regs=$(grep -o 'Used [0-9]* registers' "$w/ptxas.log" | awk '{print $2}' | sort -n | uniq | tr '\n' ' ')
    spills=$(grep -o '[0-9]* bytes spill stores' "$w/ptxas.log" | awk '{s += $1} END {print s + 0}')
    cuobjdump -sass "$w/conv2d_tc.o" >"$w/conv2d_tc.sass" 2>/dev/null
    sass="HMMA $(grep -c HMMA "$w/conv2d_tc.sass"), LDSM $(grep -c LDSM "$w/conv2d_tc.sass"), LDGSTS $(grep -c LDGSTS "$w/conv2d_tc.sass")"
    record "ptxas conv2d_tc ($arch)" "$([ "$spills" = 0 ] && echo PASS || echo FAIL)" "registers $regs; spill bytes $spills; SASS $sass"
    timeout -k 10 60 build-gpu/tests/tool_gpu_peak >"$w/peak.txt" 2>&1
    record "mma peak (info)" "$([ $? = 0 ] && echo INFO || echo FAIL)" "$(tail -n 4 "$w/peak.txt" | sed 's/  */ /g' | tr '\n' ';')"

    # 2. the checks
    timeout -k 10 "$(cut_to 240)" env BUILD_DIR=build-gpu DEEPLAB="$DEEPLAB" DEEPLAB_RESULTS_TC="$PWD/$w/parity-tc.json" \
        tests/run.sh cuda_warp cuda_layers cuda_tc >"$w/tests.log" 2>&1
    cp -r build-gpu/test-logs "$w/test-logs" 2>/dev/null
    for t in test_cuda_warp test_cuda_layers test_parity_cuda_tc; do
        local line st tlog=build-gpu/test-logs/$t.log note
        line=$(grep -E "^(PASS|FAIL|SKIP) +$t " "$w/tests.log")
        st=${line%% *}
        note="$(grep -c '^ok' "$tlog" 2>/dev/null) checks ok, $(grep -c '^FAIL' "$tlog" 2>/dev/null) failed"
        [ "$st" = SKIP ] && st=FAIL note="skipped on a GPU machine: $(grep -m1 -i skip "$tlog")"
        [ -z "$st" ] && note="did not run (time budget?)"
        record "$t" "${st:-FAIL}" "$note"
    done
    # 3. PyTorch and deeplab side by side, logits first; the verdict
    local pt=$(( $(left) - 120 )) # the per-layer table and the sanitizers after it
    timeout -k 10 "$((pt > 60 ? pt : 60))" "$PYTHON" tools/bench_pytorch.py --device cuda --batch 1,8 --backends native \
        --precisions fp32,tf32,fp16,bf16 --output mass --compile-dtypes bf16 --compile-modes max-autotune \
        --budget "$((pt > 60 ? pt - 20 : 40))" --verdict --out bench/results >"$w/pytorch.md" 2>"$w/pytorch.err"
    local r=$?
    local verdict
    verdict=$(sed -n '/^## Verdict/,$p' "$w/pytorch.md" | grep -E '^- ' | tr '\n' ' ')
    if [ $r != 0 ]; then record "bench_pytorch (issue 12 bars)" FAIL "exit $r: $(tail -n 2 "$w/pytorch.err" | tr '\n' ' ')"
    elif grep -q -- '- overall: PASS' "$w/pytorch.md"; then record "bench_pytorch (issue 12 bars)" PASS "$verdict"
    else record "bench_pytorch (issue 12 bars)" FAIL "$verdict"; fi

    # 4. per layer, against the measured peak
    for prec in bf16 fp16; do
        [ $prec = fp16 ] && [ "$(left)" -lt 150 ] && continue
        timeout -k 10 "$(cut_to 50)" "$DEEPLAB" bench --device cuda --size 520 --batch 1,8 --precision "$prec" \
            --output mass --runs 10 --warmup 3 --layers >"$w/layers-$prec.md" 2>"$w/layers-$prec.err"
        local r=$?
        record "bench --layers $prec 520x520 (info)" "$([ $r = 0 ] && echo INFO || echo FAIL)" \
            "$(grep -m1 'of peak:' -A0 "$w/layers-$prec.md" | sed 's/.*measured on this GPU, //; s/ (mma.*//') peak; \
$(grep -E '^\| native' "$w/layers-$prec.md" | awk -F'|' '{printf "b%s %s ms dev; ", $5, $11}')"
    done

    # 5. compute-sanitizer over the tensor-core layer checks, with what time is left
    local san
    san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    for tool in racecheck memcheck; do
        if [ -z "$san" ]; then record "compute-sanitizer $tool" FAIL "not found"; continue; fi
        timeout -k 10 "$(cut_to 45)" env DL_TEST_TC_ONLY=1 DL_TEST_QUICK=1 "$san" --tool "$tool" --error-exitcode 99 \
            build-gpu/tests/test_cuda_layers >"$w/sanitizer-$tool.log" 2>&1
        local r=$?
        record "compute-sanitizer $tool (tc layers)" "$([ $r = 0 ] && echo PASS || echo FAIL)" \
            "exit $r; $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$w/sanitizer-$tool.log" | sed 's/^========= //')"
    done

    # 6. results
    local overall=PASS stamp md json
    for x in "${results[@]}"; do [ "$x" = FAIL ] && overall=FAIL; done
    stamp=$(date -u +%Y%m%d-%H%M)
    md=bench/results/gpu-tc-$stamp-$commit.md
    json=bench/results/gpu-tc-$stamp-$commit.json
    {
        echo "# gpu-bench --tc $(date -u +%Y-%m-%dT%H:%MZ): $overall"
        echo
        echo "- GPU: $gpu"
        echo "- $(cat "$w/python.txt" 2>/dev/null | head -n 1); nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
        echo "- commit: $commit; host: $(uname -sr), $(nproc) CPUs"
        echo
        echo "| step | result | notes |"
        echo "|---|---|---|"
        for i in "${!names[@]}"; do echo "| ${names[$i]} | ${results[$i]} | ${notes[$i]} |"; done
        echo
        cat "$w/pytorch.md" 2>/dev/null
        for prec in bf16 fp16; do echo; sed "s/^## /## $prec: /" "$w/layers-$prec.md" 2>/dev/null; done
    } >"$md"
    "$PYTHON" - "$json" "$overall" "$gpu" "$commit" "$w/parity-tc.json" "${#names[@]}" "${names[@]}" "${results[@]}" \
        "${notes[@]}" <<'EOF' || echo "gpu-bench: could not write $json"
import json, os, sys
out, overall, gpu, commit, parity, n = sys.argv[1:7]
n = int(n)
rest = sys.argv[7:]
doc = {"overall": overall, "gpu": gpu, "commit": commit,
       "steps": [{"step": rest[i], "result": rest[n + i], "notes": rest[2 * n + i]} for i in range(n)]}
if os.path.exists(parity) and os.path.getsize(parity):
    doc["parity_tc"] = json.load(open(parity))
json.dump(doc, open(out, "w"), indent=2)
EOF
    tar -czf build-gpu/gpu-tc-logs.tar.gz -C build-gpu gpu-bench 2>/dev/null
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
        cp "$md" "$OUT/gpu-tc.md"
        cp "$json" "$OUT/gpu-tc.json" 2>/dev/null
        cp "$(ls -t bench/results/gpu_520_*.json 2>/dev/null | head -n 1)" "$OUT/" 2>/dev/null
        cp build-gpu/gpu-tc-logs.tar.gz "$OUT/"
    fi
    echo
    echo "gpu-bench --tc: $gpu, commit $commit"
    printf '%-40s %-5s %s\n' step result notes
    for i in "${!names[@]}"; do printf '%-40s %-5s %s\n' "${names[$i]}" "${results[$i]}" "${notes[$i]}"; done
    echo "overall: $overall in $(($(date +%s) - t0)) s; $md${OUT:+ and \$OUT}"
    [ $overall = PASS ]
    exit
}

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
[ "$mode" = --tc ] && tc_mode # (defined below; it exits)

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
