#!/usr/bin/env bash
# Runs the real-kernel suites in the guest in two lanes at once: lane A's files one after another
# in the background, lane B's in the foreground. Each suite has its own pool, state, sockets and
# kubelet directory (harness.ts), so two can share the guest; the guest has two vCPUs, and a lane
# spends much of its time waiting on the other processes it drives, so two lanes finish well before
# one lane of the same files would. Lane A's output is kept in a file and printed when it ends, so
# neither lane's report is interleaved with the other's.
# Usage: lanes.sh A1.mjs A2.mjs ... -- B1.mjs B2.mjs ...
set -uo pipefail
lane_a=()
while [[ $# -gt 0 && "$1" != "--" ]]; do lane_a+=("$1"); shift; done
shift || true
lane_b=("$@")
node=node_modules/.bin/node
run() { "$node" --test --test-concurrency=1 --test-reporter=spec "$@"; }
out_a="$(mktemp /tmp/lane-a.XXXXXX)"
status_a=0
if [[ ${#lane_a[@]} -gt 0 ]]; then
  echo "lanes: lane A (${lane_a[*]}) runs beside lane B; its report follows lane B's"
  run "${lane_a[@]}" >"$out_a" 2>&1 &
  pid_a=$!
fi
status_b=0
if [[ ${#lane_b[@]} -gt 0 ]]; then run "${lane_b[@]}" || status_b=$?; fi
if [[ ${#lane_a[@]} -gt 0 ]]; then
  wait "$pid_a" || status_a=$?
  echo "== lane A (${lane_a[*]})"
  cat "$out_a"
fi
echo "lanes: lane A exited $status_a, lane B exited $status_b"
[[ $status_a -eq 0 && $status_b -eq 0 ]]
