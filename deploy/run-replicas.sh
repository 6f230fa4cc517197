#!/usr/bin/env bash
# deploy/run-replicas.sh [N] - one `deeplab serve` per GPU on this machine, for nginx
# (deploy/nginx/deeplab.conf) to balance: replica i on 127.0.0.1:$((BASE_PORT + i)) with
# --device cuda:i, so that each sees its GPU alone, and --session-prefix i (two hex digits: 00,
# 01, ...), by which nginx sends a session's requests to the replica that holds it. N: the GPUs nvidia-smi lists (default), or
# that many CPU replicas when there is no GPU (each then gets its share of the cores).
# SIGTERM or ^C drains every replica (requests in flight finish) and waits for them.
#
#   BASE_PORT=7001 DEEPLAB=bin/deeplab deploy/run-replicas.sh        # then: nginx with deeplab.conf
#   extra serve options: DEEPLAB_SERVE_ARGS="--queue 64 --max-batch 8"; GPUS=0: CPU replicas anyway
set -euo pipefail
deeplab=${DEEPLAB:-deeplab}
base=${BASE_PORT:-7001}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)}
n=${1:-$((gpus > 0 ? gpus : 1))}
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run-replicas: N must be a number of replicas, not '$n'" >&2; exit 64; }
cores=$(nproc)
pids=()
# the exit status: 0 when every replica drained and exited 0, else the last failing one's
drain() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local status=0
    for p in "${pids[@]}"; do wait "$p" || status=$?; done
    exit "$status"
}
trap drain TERM INT
for ((i = 0; i < n; i++)); do
    if [ "$gpus" -gt 0 ]; then
        device=(--device "cuda:$i")
    else
        device=(--device cpu --threads $((cores / n > 0 ? cores / n : 1)))
    fi
    # shellcheck disable=SC2086
    "$deeplab" serve --host 127.0.0.1 --port $((base + i)) "${device[@]}" --session-prefix "$(printf %02x "$i")" \
        ${DEEPLAB_SERVE_ARGS:-} &
    pids+=($!)
    echo "run-replicas: replica $i on 127.0.0.1:$((base + i)) (${device[*]}), pid ${pids[-1]}" >&2
done
wait
