# syntax=docker/dockerfile:1
# dmthin-csi: one image for the controller Deployment, the node DaemonSet and the operator CLI
# (`kubectl exec ... -- dmthin-csi status|doctor`).

# ---- build: the driver as one bundled file ----
FROM node:24-bookworm-slim AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY scripts/ scripts/
COPY proto/ proto/
COPY src/ src/
RUN npm run build && node dist/dmthin-csi.mjs help >/dev/null
# koffi's prebuilt platform package (its native part) is copied into dist/node_modules by the
# bundle script, so it travels with dist/ to /app.
RUN test -f dist/node_modules/@koromix/koffi-linux-$(node -p "process.arch")/linux_$(node -p "process.arch")/koffi.node

# ---- runtime: Node 24 LTS + the device-mapper and filesystem tools the driver runs ----
FROM node:24-bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# xfsprogs depends on python3 and libicu72 for xfs_scrub_all and xfs_scrub alone; the driver runs
# only mkfs.xfs and xfs_growfs of it. Both, with what only they brought (81 MB), are purged
# from what this layer installed (a python3 of the base would stay; python3 goes first, as its
# prerm runs python), and the two scrub programs removed. The price: dpkg records xfsprogs'
# dependencies as unmet, so an image built FROM this one runs `apt-get -f install` (which puts
# them back) before its own apt-get install. Checked here: apt reports nothing else unmet, and
# every program the driver runs still finds its libraries.
RUN dpkg-query -W -f '${Package}\n' | sort >/tmp/base-packages \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      dmsetup \
      e2fsprogs \
      xfsprogs \
      util-linux \
      mount \
      thin-provisioning-tools \
 && rm -rf /var/lib/apt/lists/* \
 && purge="$(dpkg-query -W -f '${Package}\n' | sort | comm -13 /tmp/base-packages - \
      | grep -xE 'python3.*|libpython3.*|media-types|libicu[0-9]+|libssl3|libsqlite3-0|libncursesw6|libreadline8|readline-common|libtirpc3|libtirpc-common|libnsl2|libkrb5-3|libk5crypto3|libkrb5support0|libkeyutils1|libgssapi-krb5-2')" \
 && echo "$purge" | grep -x python3 | xargs -r dpkg --purge --force-depends \
 && echo "$purge" | grep -vx python3 | xargs -r dpkg --purge --force-depends \
 && rm -f /usr/sbin/xfs_scrub /usr/sbin/xfs_scrub_all /tmp/base-packages \
 && test "$(apt-get check 2>&1 | sed -n 's/^ \([^ ]*\) : .*/\1/p' | sort -u)" = xfsprogs \
 && for p in dmsetup mkfs.ext4 resize2fs fsck.ext4 mkfs.xfs xfs_growfs thin_check thin_ls blkid blockdev losetup mount umount; do \
      f="$(command -v "$p")" && ! ldd "$f" | grep 'not found' || exit 1; \
    done
COPY --from=build /src/dist/ /app/
# V8's compile cache, warmed by the help run below: a (re)started driver skips parsing the bundle.
ENV NODE_COMPILE_CACHE=/var/cache/dmthin-csi
# The CSI spec's proto and its Apache-2.0 licence: the bundle carries a descriptor generated from it.
COPY proto/csi.proto proto/LICENSE /usr/share/dmthin-csi/
# --optimize-for-size (V8 grows the old generation less eagerly; NODE_OPTIONS does not accept
# it, so every start goes through this wrapper): at 1,000 volumes + 1,000 snapshots the peak
# RSS was 164 MiB without it and 106 MiB with it, in an 8 GiB guest (bench/results).
RUN printf '#!/bin/sh\nexec node --enable-source-maps --optimize-for-size /app/dmthin-csi.mjs "$@"\n' >/usr/local/bin/dmthin-csi \
 && chmod 0755 /usr/local/bin/dmthin-csi \
 && dmthin-csi help >/dev/null
ENV NODE_ENV=production
# A 2 MiB young generation (V8's default grows to 16 MiB per semi-space): a burst of requests
# peaked at 177-193 MiB RSS with the default and 112 MiB with this, at the same throughput
# (bench/results, 120 volumes). Every process of the image starts node, so set it here.
ENV NODE_OPTIONS=--max-semi-space-size=2
# Root: the node plugin drives device-mapper and mounts (the DaemonSet runs it privileged).
USER root
ENTRYPOINT ["/usr/local/bin/dmthin-csi"]
CMD ["help"]
