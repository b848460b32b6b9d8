#!/usr/bin/env bash
# Builds the image from the project's Dockerfile with buildah: no Docker daemon needed.
#
#   scripts/build-image.sh [--tag NAME] [--export DIR]
#
# The default tag is the chart's default image (charts/dmthin-csi: image.repository, and the
# appVersion, which is package.json's version), so a pushed build is what the chart pulls.
#
# Where a container registry is reachable, the build is the plain one, pulling the real base
# node:24-bookworm-slim. Where none is (CI here), it first makes a labelled TEST STAND-IN for that
# base (scripts/image-standin-base.sh) and builds with --pull=never. DMTHIN_IMAGE_BASE=registry
# or =standin forces either. Either way the Dockerfile is the one users build.
#
# The build runs with --isolation chroot (crun fails on hosts that mix cgroup v1 and v2) and
# --network host. When the host's npm trusts a CA file (npm config cafile), npm ci in the build
# trusts it too: it is bind-mounted read-only for the build only, nothing of it is in the image.
#
# --export DIR unpacks the image's root filesystem into DIR (for the real-kernel suite, which
# chroots into it) and its config into DIR.config.json; skipped when DIR already holds this
# image (DIR.id records its id).
set -euo pipefail
cd "$(dirname "$0")/.."

tag="ghcr.io/dmthin-csi/dmthin-csi:$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json)"
export_dir=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --export) export_dir="$2"; shift 2 ;;
    *) echo "usage: $0 [--tag NAME] [--export DIR]" >&2; exit 2 ;;
  esac
done

base_mode="${DMTHIN_IMAGE_BASE:-}"
if [[ -z "$base_mode" ]]; then
  # Any HTTP answer (401 included) means the registry is reachable.
  code="$(curl -sS -o /dev/null -m 10 -w '%{http_code}' https://registry-1.docker.io/v2/ 2>/dev/null || true)"
  if [[ "$code" =~ ^[1-5][0-9][0-9]$ ]]; then base_mode=registry; else base_mode=standin; fi
fi

# always: a stand-in stored under the base's name by an earlier offline build is replaced.
pull=(--pull=always)
case "$base_mode" in
  registry) echo "build-image: a registry is reachable: building on the real node:24-bookworm-slim" ;;
  standin)
    echo "build-image: no container registry reachable: building on a local TEST STAND-IN for node:24-bookworm-slim"
    bash scripts/image-standin-base.sh
    pull=(--pull=never) ;;
  *) echo "build-image: DMTHIN_IMAGE_BASE must be registry or standin" >&2; exit 2 ;;
esac

# npm's global config dir of the base image (/usr/local/etc) is empty: a read-only mount of a
# dir holding npmrc + the CA file over it makes npm ci trust what the host's npm trusts.
mounts=()
cafile="$(npm config get cafile 2>/dev/null || true)"
[[ -n "$cafile" && "$cafile" != null ]] || cafile="${NODE_EXTRA_CA_CERTS:-}"
if [[ -n "$cafile" && "$cafile" != null && -f "$cafile" ]]; then
  npmetc="$(mktemp -d)"
  trap 'rm -rf "$npmetc"' EXIT
  cp "$cafile" "$npmetc/ca.crt"
  printf 'cafile=/usr/local/etc/ca.crt\n' >"$npmetc/npmrc"
  chmod -R a+rX "$npmetc"
  mounts=(--volume "$npmetc:/usr/local/etc:ro")
fi

t0=$SECONDS
buildah bud --quiet --isolation chroot --network host --layers --force-rm "${pull[@]}" "${mounts[@]}" \
  --file Dockerfile --tag "$tag" . >/dev/null
echo "build-image: built $tag in $((SECONDS - t0)) s"
podman image inspect --format 'build-image: {{.Id}} {{.Size}} bytes' "$tag"

if [[ -n "$export_dir" ]]; then
  id="$(podman image inspect --format '{{.Id}}' "$tag")"
  if [[ -d "$export_dir" && "$(cat "$export_dir.id" 2>/dev/null)" == "$id" ]]; then
    echo "build-image: $export_dir already holds $tag"
  else
    t0=$SECONDS
    rm -rf "$export_dir" "$export_dir.id"
    mkdir -p "$export_dir"
    ctr="$(buildah from --pull=never --quiet "$tag")"
    mnt="$(buildah mount "$ctr")"
    tar -C "$mnt" -cf - . | tar -C "$export_dir" -xpf -
    buildah umount "$ctr" >/dev/null
    buildah rm "$ctr" >/dev/null
    # The image's config (Env, Entrypoint, Cmd): what a runtime applies to the unpacked root.
    podman image inspect --format '{{json .Config}}' "$tag" >"$export_dir.config.json"
    echo "$id" >"$export_dir.id"
    echo "build-image: exported the root filesystem to $export_dir in $((SECONDS - t0)) s"
  fi
fi
