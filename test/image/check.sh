#!/usr/bin/env bash
# CI for the container image: builds the real Dockerfile (scripts/build-image.sh: buildah, no
# daemon; on a test stand-in base where no registry is reachable), exports its root filesystem
# for the real-kernel suite (test/realkernel/image.test.ts), and runs `help` and `doctor` in it
# under podman (runc: crun fails on hosts mixing cgroup v1 and v2; explicit rlimits: podman's
# defaults need CAP_SYS_RESOURCE).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=localhost/dmthin-csi:dev
bash scripts/build-image.sh --tag "$tag" --export .cache/image/rootfs
run=(podman run --rm --runtime runc --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
fail() { echo "image check: $*" >&2; exit 1; }

help="$("${run[@]}" "$tag")" || fail "the image's default command (help) failed"
grep -q '^Usage: dmthin-csi COMMAND' <<<"$help" || fail "help printed no usage: $help"
echo "image check: help runs (the image's default CMD)"

set +e
doctor="$("${run[@]}" "$tag" doctor 2>&1)"
status=$?
set -e
echo "$doctor"
for tool in dmsetup mkfs.ext4 resize2fs mkfs.xfs xfs_growfs blkid losetup thin_check thin_ls; do
  grep -qE "^\[ OK \] $tool " <<<"$doctor" || fail "doctor found no working $tool in the image"
done
# An unprivileged container has no /dev/mapper/control, whatever the host: exactly the
# device-mapper checks fail (the real-kernel suite runs doctor privileged, where all pass).
others="$(grep '^\[FAIL\]' <<<"$doctor" | grep -vc -e '/dev/mapper/control' -e 'dm-thin targets' || true)"
[[ $status -eq 1 && $others -eq 0 ]] && grep -q '^\[FAIL\] /dev/mapper/control' <<<"$doctor" \
  || fail "doctor: status $status, expected 1 with only the device-mapper checks failing"
echo "image check: doctor finds every tool in the image (status $status)"
