#!/usr/bin/env bash
# Runs the real-kernel suites in the guest: `node --test` sorts the files it is given, so groups
# of files run one after another in the order given, "--then" between groups, each group with one
# `node --test` as before. The exit status is the first failing group's.
set -uo pipefail
status=0
group=()
run() {
  [[ ${#group[@]} -gt 0 ]] || return 0
  node_modules/.bin/node --test --test-concurrency=1 --test-reporter=spec "${group[@]}"
  local rc=$?
  [[ $status -ne 0 || $rc -eq 0 ]] || status=$rc
  group=()
}
for a in "$@"; do
  if [[ $a == --then ]]; then run; else group+=("$a"); fi
done
run
exit "$status"
