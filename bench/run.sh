#!/usr/bin/env bash
# Bundles the driver and the benchmark, boots the test VM (real dm-thin) and runs it there.
#   bench/run.sh --spawn-cost [N]     (profiling aid: cost of one spawned dmsetup, bash vs node vs execa)
#   bench/run.sh --snapshot-metadata  (changed-block tracking: a delta's time as the pool grows)
#   bench/run.sh [--quick] [--reps N] [--scale N] [--scale-snapshots N] [--mkfs-reps N] [--list-reps N] [--skip ops,scale,mkfs]
# Writes bench/out/results.json and prints the table. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
if [[ "${1:-}" == --spawn-cost ]]; then
  # Profiling aid: the cost of one spawned dmsetup from bash, Node and the driver's run().
  node scripts/bundle.mjs bench/spawn-cost.ts
  exec test/vm/run-in-vm.sh --timeout 900 -- node_modules/.bin/node dist/spawn-cost.mjs "${2:-20}"
fi
if [[ "${1:-}" == --snapshot-metadata ]]; then
  # Changed-block tracking: GetMetadataDelta's time against volume size, mapped blocks, snapshots.
  node scripts/bundle.mjs bench/snapshot-metadata.ts
  mkdir -p bench/out
  exec test/vm/run-in-vm.sh --mem "${BENCH_VM_MEM:-4096}" --timeout "${BENCH_TIMEOUT:-1800}" -- \
    node_modules/.bin/node dist/snapshot-metadata.mjs "$PWD/bench/out/snapshot-metadata.md"
fi
node scripts/bundle.mjs bench/bench.ts
mkdir -p bench/out
rm -f bench/out/results.json
status=0
test/vm/run-in-vm.sh --mem "${BENCH_VM_MEM:-8192}" --timeout "${BENCH_TIMEOUT:-5400}" -- \
  node_modules/.bin/node dist/bench.mjs --out "$PWD/bench/out/results.json" "$@" || status=$?
if [[ -s bench/out/results.json ]]; then
  echo
  echo "=== bench/out/results.json ==="
  node dist/bench.mjs --render bench/out/results.json
fi
exit "$status"
