#!/usr/bin/env bash
# The whole test suite: types, unit tests (fakes + real loop/ext4/xfs on the host),
# then the real-kernel suite in a qemu guest with device-mapper.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

echo "== typecheck"
tsc -p tsconfig.json

echo "== unit tests"
node --test --test-reporter=spec 'test/unit/**/*.test.ts'

echo "== container image (buildah build of the Dockerfile; help and doctor under podman)"
bash test/image/check.sh

echo "== real-kernel suite (qemu guest)"
bash test/realkernel/run.sh
