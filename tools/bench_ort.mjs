// bench_ort.mjs - ONNX Runtime (npm onnxruntime-node, CPU) on one model, for bench_cpu_peers.sh.
//
//     node tools/bench_ort.mjs MODEL.onnx INPUT.f32 N C H W THREADS RUNS WARMUP [LOGITS.f32]
//
// INPUT.f32 holds N*C*H*W little-endian floats. Runs the model WARMUP times, then RUNS timed
// times (wall clock around session.run, the output included), and prints one JSON line:
// {"median_ms", "p10_ms", "p90_ms", "times_ms", "version"}. With LOGITS.f32 the first output of
// the first run is written there, for the parity check. Subnormals are flushed to zero, as
// deeplab and PyTorch (set_flush_denormal) do: random-weight models produce them.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ort = require("onnxruntime-node");
const [model, input, n, c, h, w, threads, runs, warmup, logits] = process.argv.slice(2);
const shape = [n, c, h, w].map(Number);
const buf = readFileSync(input);
const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);

const session = await ort.InferenceSession.create(model, {
  executionProviders: ["cpu"],
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  extra: { session: { set_denormal_as_zero: "1" } },
});
const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", data, shape) };
const times = [];
for (let i = 0; i < Number(warmup) + Number(runs); i++) {
  const t0 = process.hrtime.bigint();
  const out = await session.run(feeds);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (i === 0 && logits) {
    const y = out[session.outputNames[0]].data;
    writeFileSync(logits, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
  if (i >= Number(warmup)) times.push(ms);
}
const sorted = [...times].sort((a, b) => a - b);
const q = (p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
console.log(JSON.stringify({
  median_ms: q(0.5), p10_ms: q(0.1), p90_ms: q(0.9), times_ms: times,
  version: require("onnxruntime-node/package.json").version,
}));
