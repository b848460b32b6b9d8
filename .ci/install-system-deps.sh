#!/usr/bin/env bash
# Installs the Debian packages the project's tests need, including the
# real-kernel VM harness under test/vm/ (qemu, busybox, kmod, dm tools).
# Idempotent: when every package is already installed it returns at once,
# without touching the network.
set -euo pipefail

packages=(
  # VM harness (test/vm/): emulator, initramfs tooling
  qemu-system-x86
  busybox-static
  kmod
  cpio
  gzip
  coreutils
  git
  # userland used inside the guest (the host root is the guest's userland)
  dmsetup
  e2fsprogs
  xfsprogs
  thin-provisioning-tools
  util-linux
  lvm2
  mount
  procps
  # container image (scripts/build-image.sh, test/image/check.sh): daemonless build and run,
  # a Debian root for the stand-in base where no registry is reachable
  buildah
  podman
  runc
  mmdebstrap
  # real Kubernetes suite (test/realkernel/realkube.test.ts): etcd for the kube-apiserver of ../shared/bin
  etcd-server
  xz-utils
  # real cluster suite (test/realkernel/cluster.test.ts): the node's container runtime and pod network
  # (runc is listed above), and the image store it gets made on the host (scripts/build-cluster-images.sh)
  containerd
  containernetworking-plugins
)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-system-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
