#!/usr/bin/env bash
# tools/bench_cpu_peers.sh - deeplab on the CPU against the engines a user would pick instead,
# in one run on one machine: PyTorch eager (Debian's torch, NCHW and channels_last), ONNX Runtime
# (npm onnxruntime-node 1.30.0, CPU) and deeplab fp32 and bf16, on the same seeded ResNet-101.
#
#     tools/bench_cpu_peers.sh [--rounds 3] [--runs 5] [--warmup 2] [--threads "2 1"] [--size 520]
#                              [--torch-runs 3] [--torch-warmup 1] [--no-torch] [--out bench/results]
#
# First the model is made with torchvision, saved as safetensors for deeplab and exported to
# ONNX (opset 13) for ONNX Runtime, and every engine's logits on one photo are compared with
# torchvision's (fp32 engines must be within 1e-4, or nothing is timed: they would not compute
# the same function; bf16 is reported). Then, per round, each thread count and each engine in
# turn (interleaved, so a change in the machine's load hits all of them): median of --runs after
# --warmup runs, each engine in its own process. Prints one table (every round, the best round,
# the speed-up over ONNX Runtime fp32) and writes JSON to --out. ONNX Runtime is installed from
# the npm registry into build/peers/ (ignored by git) with ONNXRUNTIME_NODE_INSTALL=skip: its
# install script would fetch GPU files; the CPU library ships inside the package.
# Not part of `make test`: it takes 10-20 minutes. Check `uptime` first: the numbers mean
# something only on a machine no one else is using.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
DEEPLAB=${DEEPLAB:-$PWD/bin/deeplab}
rounds=3 runs=5 warmup=2 threads="2 1" size=520 torch_runs=3 torch_warmup=1 torch=1 out=bench/results
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift ;;
        --runs) runs=$2; shift ;;
        --warmup) warmup=$2; shift ;;
        --threads) threads=$2; shift ;;
        --size) size=$2; shift ;;
        --torch-runs) torch_runs=$2; shift ;;
        --torch-warmup) torch_warmup=$2; shift ;;
        --no-torch) torch=0 ;;
        --out) out=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench_cpu_peers.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
    shift
done
[ -x "$DEEPLAB" ] || { echo "bench_cpu_peers.sh: $DEEPLAB not found: run make first" >&2; exit 66; }

work=build/peers
mkdir -p "$work"
if [ ! -f "$work/node_modules/onnxruntime-node/package.json" ]; then
    echo "installing onnxruntime-node@1.30.0 into $work (npm)" >&2
    ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$work" --no-audit --no-fund onnxruntime-node@1.30.0 >&2
fi
export NODE_PATH="$PWD/$work/node_modules"
ort_version=$(node -e 'console.log(require("onnxruntime-node/package.json").version)')

"$PY" tools/bench_cpu_peers.py prepare "$work" "$size" >&2
results="$work/results.jsonl"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$("$DEEPLAB" --version | sed -n 's/.*(commit \([^)]*\)).*/\1/p')
# The commit is the one baked in at the binary's last build: say so when the tree has moved on.
head=$(git rev-parse --short=12 HEAD 2>/dev/null)$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
if [ -n "$commit" ] && [ "$commit" != "$head" ]; then
    echo "bench_cpu_peers.sh: warning: $DEEPLAB was built at $commit, the tree is at $head (run make first)" >&2
fi
"$PY" tools/bench_cpu_peers.py meta | "$PY" -c '
import json, sys
m = json.loads(sys.stdin.read())
m.update(size=int(sys.argv[1]), commit=sys.argv[2], onnxruntime=sys.argv[3], load_before=sys.argv[4], runs=int(sys.argv[5]),
         warmup=int(sys.argv[6]), torch_runs=int(sys.argv[7]), torch_warmup=int(sys.argv[8]))
print(json.dumps(m))' "$size" "$commit" "$ort_version" "$load_before" "$runs" "$warmup" "$torch_runs" "$torch_warmup" \
    > "$results"

# parity first: every engine's logits on the photo against torchvision's
echo "parity: logits on $work/photo.png against torchvision fp32" >&2
node tools/bench_ort.mjs "$work/model.onnx" "$work/input.f32" 1 3 "$size" "$size" 2 1 0 "$work/ort.f32" > /dev/null
"$PY" tools/bench_cpu_peers.py parity "$work" "ONNX Runtime fp32" "$work/ort.f32" >> "$results"
precisions="fp32"
if "$DEEPLAB" segment -w "$work/model.safetensors" --size 0 --device cpu --precision bf16 \
        -o "$work/seg.png" "$work/photo.png" 2>/dev/null; then
    precisions="fp32 bf16"
else
    echo "note: this CPU has no AVX512_BF16: deeplab bf16 is left out" >&2
fi
for p in $precisions; do
    "$DEEPLAB" segment -w "$work/model.safetensors" --size 0 --device cpu --precision "$p" \
        --save-logits "$work/deeplab_$p.npy" -o "$work/seg.png" "$work/photo.png"
    "$PY" tools/bench_cpu_peers.py parity "$work" "deeplab $p" "$work/deeplab_$p.npy" >> "$results"
done
"$PY" - "$results" <<'EOF'
import json, sys
bad = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "parity" and "fp32" in r["name"] and r["max_rel"] > 1e-4]
for r in bad:
    print(f"bench_cpu_peers.sh: {r['name']} is {r['max_rel']:.1e} from torchvision: not timing different functions", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# the timed rounds, interleaved
record() { # name threads round: reads JSON lines with median_ms etc. on stdin
    "$PY" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    name = sys.argv[1] + (" " + r["layout"] if "layout" in r else "")
    print(json.dumps({"kind": "time", "name": name, "threads": int(sys.argv[2]), "round": int(sys.argv[3]),
                      "median_ms": r["median_ms"], "p10_ms": r["p10_ms"], "p90_ms": r["p90_ms"]}))' "$@" >> "$results"
}
for r in $(seq 1 "$rounds"); do
    for t in $threads; do
        echo "round $r, $t thread(s) (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        if [ $torch = 1 ]; then
            "$PY" tools/bench_cpu_peers.py torch "$work" "$t" "$torch_runs" "$torch_warmup" | record "PyTorch fp32" "$t" "$r"
        fi
        node tools/bench_ort.mjs "$work/model.onnx" "$work/input.f32" 1 3 "$size" "$size" "$t" "$runs" "$warmup" \
            | record "ONNX Runtime fp32" "$t" "$r"
        for p in $precisions; do
            "$DEEPLAB" bench --device cpu -w "$work/model.safetensors" --size "$size" --threads "$t" --runs "$runs" \
                --warmup "$warmup" --precision "$p" --json \
                | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["results"][0]))' \
                | record "deeplab $p" "$t" "$r"
        done
    done
done
"$PY" - "$results" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows[0]["load_after"] = sys.argv[2]
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
EOF
"$PY" tools/bench_cpu_peers.py summarize "$work" "$out"
