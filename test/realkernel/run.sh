#!/usr/bin/env bash
# Bundles the driver and the real-kernel suites, boots the test VM and runs them there.
# Bundles, because the guest is emulated: one file loads ~60x faster than node_modules.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/node_modules/.bin:$PATH"
# One after another: two suites at once in the 2-vCPU guest made each take twice as long (an
# agent's restart in the crash sweep went from ~10 s to ~25 s) and timed the cluster suites out.
# REALKERNEL_SUITES runs only the suites named (the real-cluster suite always last, below).
suites=(test/realkernel/lifecycle.test.ts test/realkernel/crash.test.ts test/realkernel/kube.test.ts test/realkernel/npm-start.test.ts test/realkernel/dm-ioctl.test.ts test/realkernel/dm-deadline.test.ts test/realkernel/mount-syscall.test.ts test/realkernel/hostile.test.ts test/realkernel/group.test.ts test/realkernel/capacity.test.ts test/realkernel/grow.test.ts test/realkernel/snapshot-metadata.test.ts test/realkernel/image.test.ts test/realkernel/kube-crash.test.ts test/realkernel/kube-snapshot-metadata.test.ts test/realkernel/realkube.test.ts test/realkernel/cluster.test.ts)
if [[ -n "${REALKERNEL_SUITES:-}" ]]; then suites=($REALKERNEL_SUITES); fi
node scripts/bundle.mjs "${suites[@]}"
# image.test.ts runs the image's exported root filesystem (cached: rebuilt and re-exported only on change).
if [[ " ${suites[*]} " == *" test/realkernel/image.test.ts "* ]]; then bash scripts/build-image.sh --export .cache/image/rootfs; fi
# The real Kubernetes binaries (../shared/bin) are unpacked here on the host, xz in the emulated guest
# being slow, and the snapshot CRDs copied beside them: the suites in the guest read only .cache/realkube.
# ../shared is searched above the checkout; REALKUBE_SHARED names it for a checkout elsewhere (/tmp).
case " ${suites[*]} " in *realkube*|*cluster.test*)
  shared="${REALKUBE_SHARED:-}"
  for d in "$PWD/.." "$PWD/../.." "$PWD/../../.."; do [[ -n "$shared" ]] || { [ -x "$d/shared/bin/unpack" ] && shared="$d/shared"; }; done
  [[ -n "$shared" ]] || { echo "run.sh: no shared/bin above $PWD; set REALKUBE_SHARED to the directory holding bin/ and reference/" >&2; exit 2; }
  "$shared/bin/unpack" .cache/realkube/bin >/dev/null
  mkdir -p .cache/realkube/crds && cp "$shared"/reference/external-snapshotter-v8.6.0-crds/*.yaml .cache/realkube/crds/ ;;
esac
# cluster.test.ts imports these into the guest's containerd (no registry there); cached by content.
if [[ " ${suites[*]} " == *" test/realkernel/cluster.test.ts "* ]]; then
  bash scripts/build-cluster-images.sh .cache/realkube/bin .cache/realcluster/images
fi
# The cluster suite last, after every other suite (which node --test runs in its own, sorted,
# order): it leaves its containers, a shared root mount and its node's state behind in the guest.
mjs() { for s in "$@"; do [[ $s == */cluster.test.ts ]] || printf '%s\n' "dist/$(basename "${s%.ts}").mjs"; done; }
mapfile -t files < <(mjs "${suites[@]}")
if [[ " ${suites[*]} " == *" test/realkernel/cluster.test.ts "* ]]; then files+=(--then dist/cluster.test.mjs); fi
# 6 GiB: every file pool's metadata file is allocated in full, in guest RAM, and pools stay until the
# guest ends; the cluster suite's containerd keeps its images (~0.5 GB, archive and unpacked) there too.
exec test/vm/run-in-vm.sh --mem "${VM_MEM:-6144}" --timeout "${REALKERNEL_TIMEOUT:-4200}" --env KUBE_CRASH_OPS -- \
  bash test/realkernel/in-order.sh "${files[@]}"
