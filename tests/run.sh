#!/usr/bin/env bash
# tests/run.sh [PATTERN...] - runs the test suite and prints one line per test and a summary.
#
# A test is any of:
#   build/tests/test_*   C programs built by `make` from tests/test_*.c ($BUILD_DIR/tests with make O=)
#   tests/test_*.sh      shell scripts
#   tests/test_*.py      Python scripts, run with $PYTHON (Debian's python3 with torchvision)
# Exit status 0 = pass, 77 = skipped (the test prints why), anything else = failure.
# Each test gets DEEPLAB (the binary), PYTHON, and TEST_TMP (an empty scratch folder of its own).
# Full output goes to build/test-logs/NAME.log; a failing test's last lines are printed.
# With PATTERN arguments only tests whose name contains one of them run.
#
# GPU tests are those with cuda in their name. With EMU_BUILD_DIR set (make test does that
# on a machine without a GPU, naming build-emu/; a SANITIZE=1 build is emulated itself) they run
# from that build, against the emulated GPU, with DEEPLAB=$EMU_DEEPLAB, BUILD_DIR=$EMU_BUILD_DIR
# and DL_TEST_EMU=1, and their line says "(emulated GPU)"; with EMU_QUICK=1 (make test SANITIZE=1)
# also DL_TEST_QUICK=1, which leaves out their largest cases. Run by hand without EMU_BUILD_DIR, on
# a machine without a GPU, it takes build-emu/ when that has been built (EMU_BUILD_DIR= says no).
set -u
cd "$(dirname "$0")/.."
export DEEPLAB="${DEEPLAB:-$PWD/bin/deeplab}"
build="${BUILD_DIR:-build}"
emu_build="${EMU_BUILD_DIR:-}"
if [ -z "${EMU_BUILD_DIR+set}" ] && [ -x build-emu/bin/deeplab ] && ! nvidia-smi -L >/dev/null 2>&1; then
    emu_build=build-emu
fi
emu_deeplab="${EMU_DEEPLAB:-$PWD/${emu_build}/bin/deeplab}"
is_gpu_test() { [[ "$1" == *cuda* ]]; }
export PYTHON="${PYTHON:-/usr/bin/python3}"
export PYTHONDONTWRITEBYTECODE=1
logs=$build/test-logs
scratch=$build/test-tmp
rm -rf "$logs" "$scratch"
mkdir -p "$logs" "$scratch"

tests=()
candidates=($build/tests/test_*)
[ -n "$emu_build" ] && [ "$emu_build" != "$build" ] && candidates+=($emu_build/tests/test_*)
for t in "${candidates[@]}" tests/test_*.sh tests/test_*.py; do
    [ -e "$t" ] || continue
    [ -x "$t" ] || [[ "$t" == *.py || "$t" == *.sh ]] || continue
    name=$(basename "$t"); name=${name%.*}
    # a compiled GPU test comes from the emulated build when there is one, the others from $build
    if [ -n "$emu_build" ] && [[ "$t" != tests/* ]] && is_gpu_test "$name"; then
        [[ "$t" == "$emu_build"/* ]] || continue
    elif [ -n "$emu_build" ] && [ "$emu_build" != "$build" ] && [[ "$t" == "$emu_build"/* ]]; then
        continue
    fi
    if [ $# -gt 0 ]; then
        keep=0; for p in "$@"; do [[ "$name" == *"$p"* ]] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    tests+=("$t")
done

pass=0 fail=0 skip=0 emulated=0 failed=()
t0=$(date +%s%N)
for t in "${tests[@]}"; do
    name=$(basename "$t"); name=${name%.*}
    export TEST_TMP="$(cd "$scratch" && pwd)/$name"
    mkdir -p "$TEST_TMP"
    start=$(date +%s%N)
    env=() label=$name
    if [ -n "$emu_build" ] && is_gpu_test "$name"; then
        env=(DL_TEST_EMU=1 BUILD_DIR="$emu_build" DEEPLAB="$emu_deeplab")
        [ "${EMU_QUICK:-}" = 1 ] && env+=(DL_TEST_QUICK=1)
        label="$name (emulated GPU)"
        emulated=$((emulated + 1))
    fi
    case "$t" in
        *.py) env "${env[@]}" "$PYTHON" "$t" >"$logs/$name.log" 2>&1 ;;
        *.sh) env "${env[@]}" bash "$t" >"$logs/$name.log" 2>&1 ;;
        *) env "${env[@]}" "$t" >"$logs/$name.log" 2>&1 ;;
    esac
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 )); secs="$((ms / 1000)).$(( ms % 1000 / 100 ))"
    if [ $rc = 0 ]; then
        pass=$((pass + 1)); printf 'PASS  %-43s %6ss\n' "$label" "$secs"
    elif [ $rc = 77 ]; then
        skip=$((skip + 1)); printf 'SKIP  %-43s %6ss  %s\n' "$label" "$secs" "$(grep -m1 -i 'skip' "$logs/$name.log")"
    else
        fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL  %-43s %6ss  (exit %d; last lines of %s:)\n' "$label" "$secs" "$rc" "$logs/$name.log"
        tail -n 15 "$logs/$name.log" | sed 's/^/      | /'
    fi
done
total=$(( ($(date +%s%N) - t0) / 1000000000 ))
echo "----"
emu_note=""; [ $emulated -gt 0 ] && emu_note=" ($emulated on the emulated GPU, from $emu_build/)"
echo "tests: $pass passed, $fail failed, $skip skipped in ${total}s$emu_note (logs in $logs/)"
[ $fail = 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
[ ${#tests[@]} -gt 0 ] || { echo "no tests matched"; exit 1; }
exit 0
