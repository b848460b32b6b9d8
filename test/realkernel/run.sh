#!/usr/bin/env bash
# Bundles the driver and the real-kernel suites, boots the test VM and runs them there.
# Bundles, because the guest is emulated: one file loads ~60x faster than node_modules.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/node_modules/.bin:$PATH"
# Two lanes in one guest (lanes.sh): the long Kubernetes crash sweep beside everything else.
# REALKERNEL_SUITES (one lane, in order) runs only the suites named.
lane_a=(test/realkernel/kube-crash.test.ts test/realkernel/snapshot-metadata.test.ts test/realkernel/kube-snapshot-metadata.test.ts)
lane_b=(test/realkernel/lifecycle.test.ts test/realkernel/crash.test.ts test/realkernel/kube.test.ts test/realkernel/npm-start.test.ts test/realkernel/dm-ioctl.test.ts test/realkernel/dm-deadline.test.ts test/realkernel/mount-syscall.test.ts test/realkernel/hostile.test.ts test/realkernel/group.test.ts test/realkernel/image.test.ts test/realkernel/realkube.test.ts test/realkernel/capacity.test.ts test/realkernel/grow.test.ts)
if [[ -n "${REALKERNEL_SUITES:-}" ]]; then lane_a=(); lane_b=($REALKERNEL_SUITES); fi
suites=("${lane_a[@]}" "${lane_b[@]}")
node scripts/bundle.mjs "${suites[@]}"
# image.test.ts runs the image's exported root filesystem (cached: rebuilt and re-exported only on change).
if [[ " ${suites[*]} " == *" test/realkernel/image.test.ts "* ]]; then bash scripts/build-image.sh --export .cache/image/rootfs; fi
# The real Kubernetes binaries (../shared/bin) are unpacked here on the host: xz in the emulated guest is slow.
case " ${suites[*]} " in *realkube*) for d in .. ../..; do [ -x "$d/shared/bin/unpack" ] && { "$d/shared/bin/unpack" .cache/realkube/bin >/dev/null; break; }; done; true ;; esac
mjs() { for s in "$@"; do printf '%s\n' "dist/$(basename "${s%.ts}").mjs"; done; }
mapfile -t files_a < <(mjs "${lane_a[@]}")
mapfile -t files_b < <(mjs "${lane_b[@]}")
# 6 GiB: two lanes at once, and every file pool's metadata file is allocated in full (guest RAM).
exec test/vm/run-in-vm.sh --mem "${VM_MEM:-6144}" --timeout "${REALKERNEL_TIMEOUT:-4200}" --env KUBE_CRASH_OPS -- \
  bash test/realkernel/lanes.sh "${files_a[@]}" -- "${files_b[@]}"
