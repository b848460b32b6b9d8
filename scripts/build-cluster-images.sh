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
# archive and image of each, one "FILE IMAGE" a line; older archives are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: $0 BIN_DIR OUT_DIR}"
out="${2:?usage: $0 BIN_DIR OUT_DIR}"
mkdir -p "$out"
self="$(sha256sum "$0" | cut -c1-12)"
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
