#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD SECONDS [TARGET...] - runs each libFuzzer target for SECONDS.
#
# BUILD is the folder `make fuzz-build SANITIZE=fuzz CC=clang` built (build-fuzz): targets in
# BUILD/fuzz/. Each target starts from its seeds (tests/fuzz/corpus/NAME, in the repository) and
# the inputs earlier runs found (BUILD/fuzz-corpus/NAME, kept between runs), with its dictionary
# (tests/fuzz/NAME.dict) when there is one. A crash, leak, timeout (10 s) or out-of-memory input
# is saved as BUILD/fuzz-artifacts/NAME-*; the log is BUILD/fuzz-logs/NAME.log.
# Prints one line per target: executions, seconds, corpus size, result. Exit 1 on any finding.
# FUZZ_SEED=N fixes libFuzzer's random seed: from the same corpus, a run then repeats the same
# inputs in the same order (a shorter run does a prefix of a longer one's work). CI uses it, so
# that its brief fuzz is a regression check that passed here first, not a lottery.
set -u
cd "$(dirname "$0")/../.."
build=${1:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
mkdir -p "$build" && build=$(cd "$build" && pwd) # absolute: fuzz_cli runs in a folder of its own
seconds=${2:?usage: tests/fuzz/run.sh BUILD SECONDS [TARGET...]}
shift 2
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
mkdir -p "$build/fuzz-logs" "$build/fuzz-artifacts"
status=0
for name in "${targets[@]}"; do
    bin=$build/fuzz/fuzz_$name
    [ -x "$bin" ] || { echo "fuzz: $bin not built (make fuzz-build SANITIZE=fuzz CC=clang)"; status=1; continue; }
    corpus=$build/fuzz-corpus/$name
    mkdir -p "$corpus"
    dict=(); [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="$PWD/tests/fuzz/$name.dict")
    seed=(); [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
    log=$build/fuzz-logs/$name.log
    # -close_fd_mask=3: the code under test prints (usage errors, help); libFuzzer's own output
    # and the sanitizers' reports still go to the log. -rss_limit_mb: an input that makes the
    # library allocate 2 GB is a finding (limits must stop it first).
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-artifacts/$name-" "${dict[@]}" "${seed[@]}" "$corpus" "$PWD/tests/fuzz/corpus/$name" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    n=$(ls "$corpus" | wc -l)
    if [ $rc = 0 ]; then
        printf 'fuzz %-12s %10s executions in %ss (%s/s), corpus %d: no finding\n' "$name" "${execs:-?}" "$seconds" "${secs:-?}" "$n"
    else
        status=1
        printf 'fuzz %-12s FINDING (exit %d) after %s executions; see %s:\n' "$name" $rc "${execs:-?}" "$log"
        grep -m3 -E 'ERROR|SUMMARY|Test unit written' "$log" | sed 's/^/      | /'
    fi
done
exit $status
