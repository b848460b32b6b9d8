#!/usr/bin/env bash
# Builds the images the real-cluster suite (test/realkernel/cluster.test.ts) imports into the guest's
# containerd, which has no registry to pull from: the driver's image from the Dockerfile
# (scripts/build-image.sh), the CSI sidecars, snapshot-controller and a pause image FROM scratch
# around the static binaries of ../shared/bin, and a busybox workload image.
#
#   scripts/build-cluster-images.sh BIN_DIR OUT_DIR
#
# BIN_DIR holds the unpacked binaries (.cache/realkube/bin). Each image goes to
# OUT_DIR/NAME-KEY.tar (docker-archive, `ctr images import` reads it), KEY a hash of what the image
# is made of, so a rerun with nothing changed builds nothing. OUT_DIR/images.list names the current
# archive and image of each, one "FILE IMAGE" a line; older archives are removed. The guest gets them
# as a containerd store made here (OUT_DIR/containerd-root names its tar; see the end).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: $0 BIN_DIR OUT_DIR}"
out="${2:?usage: $0 BIN_DIR OUT_DIR}"
mkdir -p "$out"
# Bump when the images are made differently: part of every archive's key.
self=v1
list=()

# archive NAME IMAGE KEY BUILD...: runs BUILD (which makes IMAGE in buildah's store) unless the archive exists.
archive() {
  local name="$1" image="$2" key="$3"
  shift 3
  local file="$name-$key.tar"
  if [[ ! -s "$out/$file" ]]; then
    "$@"
    rm -f "$out/$name"-*.tar
    buildah push --quiet "$image" "docker-archive:$out/$file.tmp:$image" >/dev/null
    mv "$out/$file.tmp" "$out/$file"
    echo "build-cluster-images: $image -> $out/$file"
  fi
  list+=("$file $image")
}

# scratch IMAGE ROOTFS ENTRYPOINT...: an image of ROOTFS alone.
scratch() {
  local image="$1" rootfs="$2"
  shift 2
  local c
  c="$(buildah from --quiet scratch)"
  buildah copy --quiet "$c" "$rootfs" / >/dev/null
  local ep
  ep="$(printf '"%s",' "$@")"
  buildah config --entrypoint "[${ep%,}]" --cmd '' "$c"
  buildah commit --quiet --rm "$c" "$image" >/dev/null
}

# binary NAME: a FROM-scratch image of one static binary, its entry point.
binary_image() {
  local name="$1" image="$2" root
  root="$(mktemp -d)"
  cp "$bin/$name" "$root/$name"
  scratch "$image" "$root" "/$name"
  rm -rf "$root"
}

# The versions are those ../shared/bin/README.md reports for the binaries.
declare -A versions=(
  [csi-provisioner]=v4.0.1 [csi-snapshotter]=v6.3.4 [csi-resizer]=v1.10.1 [snapshot-controller]=v6.3.4
  [csi-node-driver-registrar]=v2.10.1 [livenessprobe]=v2.12.0 [pause]=3.9-test
)
for name in "${!versions[@]}"; do
  key="$(sha256sum "$bin/$name" | cut -c1-12)-$self"
  archive "$name" "localhost/realcluster/$name:${versions[$name]}" "$key" binary_image "$name" "localhost/realcluster/$name:${versions[$name]}"
done

busybox_image() {
  local root
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/tmp"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"; done
  scratch localhost/realcluster/busybox:test "$root" /bin/sh
  rm -rf "$root"
}
archive busybox localhost/realcluster/busybox:test "$(sha256sum "$(command -v busybox)" | cut -c1-12)-$self" busybox_image

# The driver: the Dockerfile's image (layers cached by buildah, so an unchanged tree builds in seconds).
DMTHIN_IMAGE_BASE="${DMTHIN_IMAGE_BASE:-}" bash scripts/build-image.sh --tag localhost/dmthin-csi:realcluster >&2
id="$(podman image inspect --format '{{.Id}}' localhost/dmthin-csi:realcluster | cut -c1-12)"
archive dmthin-csi localhost/dmthin-csi:realcluster "$id-$self" true

printf '%s\n' "${list[@]}" >"$out/images.list"

# The guest's containerd store, made here: `ctr images import` of every archive into a private
# containerd on the host (overlayfs snapshots), packed as one tar. In the emulated guest each import
# cost 10-20 s even for the pause image, the driver's 134 s (6 min for all); unpacking one tar
# costs seconds. Keyed by the archives it holds.
key="$(sha256sum "$out/images.list" "$0" | sha256sum | cut -c1-12)"
store="$out/containerd-root-$key.tar"
if [[ ! -s "$store" ]]; then
  work="$(mktemp -d)"
  # errexit holds in the trap too: a kill of the already stopped containerd must not fail the script.
  trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n[grpc]\n  address = "%s/sock"\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n' \
    "$work" "$work" "$work" >"$work/config.toml"
  containerd --config "$work/config.toml" >"$work/log" 2>&1 &
  echo $! >"$work/pid"
  for _ in $(seq 100); do ctr --address "$work/sock" version >/dev/null 2>&1 && break; sleep 0.2; done
  for l in "${list[@]}"; do ctr --address "$work/sock" -n k8s.io images import "$out/${l%% *}" >/dev/null; done
  # Unpacked, the layers' blobs are needed no more (the CRI runs containers from the snapshots and
  # reads only manifests and configs): dropped, they halve what the guest reads.
  for m in $(ctr --address "$work/sock" -n k8s.io images ls | awk 'NR > 1 { print $3 }' | sort -u); do
    ctr --address "$work/sock" -n k8s.io content get "$m" |
      node -e 'for (const l of JSON.parse(require("fs").readFileSync(0, "utf8")).layers) console.log(l.digest)'
  done | sort -u >"$work/layers"
  xargs -r ctr --address "$work/sock" -n k8s.io content rm <"$work/layers" >/dev/null
  # containerd's garbage collector removes the files a moment later.
  for _ in $(seq 100); do
    left=0
    while read -r d; do [[ -e "$work/root/io.containerd.content.v1.content/blobs/sha256/${d#sha256:}" ]] && left=1; done <"$work/layers"
    [[ "$left" -eq 0 ]] && break
    sleep 0.2
  done
  kill "$(cat "$work/pid")"
  while kill -0 "$(cat "$work/pid")" 2>/dev/null; do sleep 0.2; done
  rm -f "$out"/containerd-root-*.tar
  # Whiteouts are device nodes and opaque directories trusted.* xattrs: both must survive.
  tar --xattrs --xattrs-include='*' -C "$work/root" -cf "$store.tmp" .
  mv "$store.tmp" "$store"
  echo "build-cluster-images: containerd store -> $store"
fi
echo "$(basename "$store")" >"$out/containerd-root"
