#!/usr/bin/env bash
# The GPU proof in one device call (issue 11): device facts, the whole suite with CUDA
# required, compute-sanitizer (memcheck and racecheck) over the kernel tests, then every GPU
# benchmark. Made for the GPU machine, which has no Node.js of its own:
#
#   ../shared/gpu/bundle.sh                          (here, after npm install and the CUDA build)
#   bash .gpu/run.sh bash scripts/gpu-proof.sh [step ...]      (there; steps: info tests
#                                                   sanitize bench, default all)
#
# Logs and a tarball of the new bench/results/*.json go to $OUT (or ./gpu-out). Each step has
# its own time limit (seconds, from the environment) so that a hung kernel cannot eat the
# whole lease: TESTS_S (240), SANITIZE_S (per suite, 120), BENCH_S (per benchmark, 150),
# BENCH_TOTAL_S (all benchmarks, 1800).
# The test suite and the sanitizer share the GPU and run side by side; the benchmarks run
# alone afterwards so their timings see an idle device.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(info tests sanitize bench)
want() { local s; for s in "${steps[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
export CLIPFORGE_REQUIRE_CUDA=1
# The addon links libjpeg.so.62 from the build machine; bench/README.md copies it into .gpu/.
[ -f .gpu/libjpeg.so.62 ] && export LD_LIBRARY_PATH="$PWD/.gpu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
uvu=(node --import tsx --expose-gc node_modules/uvu/bin.js)

if want info; then
  {
    nvidia-smi
    nvcc --version | tail -2
    command -v compute-sanitizer
    node --import tsx -e "import('./lib/index.js').then((cf) => console.log(JSON.stringify(cf.backendInfo())))"
  } > "$out/info.log" 2>&1
  cat "$out/info.log"
fi

pids=()
if want tests; then
  ( timeout -k 5 "${TESTS_S:-240}" node scripts/test.mjs > "$out/test-cuda.log" 2>&1; echo "tests exit $?" >> "$out/test-cuda.log" ) &
  pids+=($!)
fi
sanitize() {  # tool, suites...: one sanitizer run per suite, logged to $out/sanitizer-<tool>.log
  local tool=$1 suite
  shift
  for suite in "$@"; do
    echo "== compute-sanitizer --tool $tool on $suite"
    timeout -k 5 "${SANITIZE_S:-120}" compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
      "${uvu[@]}" "$suite" '\.test\.ts$' 2>&1 | grep -E 'ERROR SUMMARY|=========|Total:|Passed:|FAIL|Error' | head -80
    echo "exit ${PIPESTATUS[0]}"
  done > "$out/sanitizer-$tool.log" 2>&1
}
if want sanitize; then
  sanitize memcheck test/ops test/loss test/optim &
  pids+=($!)
  sanitize racecheck test/ops test/loss &
  pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
want tests && tail -40 "$out/test-cuda.log"
want sanitize && cat "$out"/sanitizer-*.log

if want bench; then
  CLIPFORGE_BENCH_TIMEOUT_S=${BENCH_S:-150} timeout -k 5 "${BENCH_TOTAL_S:-1800}" node scripts/bench-gpu.mjs > "$out/bench.log" 2>&1
  tail -40 "$out/bench.log"
  tar -czf "$out/results.tgz" bench/results/*.json
fi
