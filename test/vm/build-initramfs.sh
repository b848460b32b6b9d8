#!/usr/bin/env bash
# Builds the kernel + initramfs that test/vm/run-in-vm.sh boots.
#
# - downloads (apt-get download, never installs) the Debian plain -amd64
#   kernel image package that linux-image-amd64 depends on, and busybox-static;
# - unpacks them with dpkg -x into a scratch dir under .cache/vm/;
# - builds a gzipped newc initramfs holding busybox, only the modules the
#   harness needs (plus their dependencies and depmod output), and test/vm/init.sh
#   as /init.
#
# The result is cached under .cache/vm/kernels/KVER/, keyed by kernel version
# and by a hash of this script and init.sh, so a second run is instant.
#
# Usage: test/vm/build-initramfs.sh [--force] [--quiet]
# Prints: VMLINUZ=PATH and INITRD=PATH (and KVER=...) on stdout.
# Environment: VM_KERNEL_PACKAGE overrides the kernel package name
#              (default: what linux-image-amd64 depends on).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null || (cd "$script_dir/../.." && pwd))"
cache_dir="$repo_root/.cache/vm"
debs_dir="$cache_dir/debs"

# Modules the guest's /init loads at boot, in this order. Each one's
# dependencies are resolved with modprobe --show-depends and loaded before it.
# crc32c_generic must come before dm-thin-pool (libcrc32c asks the crypto API
# for "crc32c" at run time, which no symbol dependency expresses).
boot_modules=(
  crc32c_generic
  virtio_pci
  9pnet_virtio
  9p
  dm-thin-pool
  loop
  ext4
  overlay
)
# Modules that are in the initramfs but loaded only on first use, by the
# kernel's module autoloader (/sbin/modprobe in the initramfs): loading xfs
# costs about 2 s of emulated CPU, which most runs do not need. "mount -t xfs"
# loads xfs, a "snapshot"/"snapshot-origin" dm table loads dm-snapshot, and
# "modprobe NAME" works in the guest as well.
ondemand_modules=(
  xfs
  dm-snapshot
  # the real-cluster suite's pod network (bridge CNI: a bridge and a veth pair per pod)
  bridge
  veth
  br_netfilter
)

force=0
quiet=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1 ;;
    --quiet) quiet=1 ;;
    -h | --help)
      sed -n '2,20p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "build-initramfs: unknown argument: $1" >&2
      exit 2
      ;;
  esac
  shift
done

log() {
  if [[ "$quiet" -eq 0 ]]; then
    echo "build-initramfs: $*" >&2
  fi
}

die() {
  echo "build-initramfs: error: $*" >&2
  exit 1
}

for tool in apt-get apt-cache dpkg dpkg-deb depmod modprobe cpio gzip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run .ci/install-system-deps.sh"
done

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

apt_updated=0
apt_update() {
  if [[ "$apt_updated" -eq 0 ]]; then
    log "running apt-get update"
    "${sudo_cmd[@]}" apt-get update -qq >&2
    apt_updated=1
  fi
}

# The exact kernel package name, e.g. linux-image-6.1.0-56-amd64.
kernel_package() {
  if [[ -n "${VM_KERNEL_PACKAGE:-}" ]]; then
    echo "$VM_KERNEL_PACKAGE"
    return 0
  fi
  local deps
  deps="$(apt-cache depends linux-image-amd64 2>/dev/null || true)"
  if ! grep -q 'Depends: linux-image-' <<<"$deps"; then
    apt_update
    deps="$(apt-cache depends linux-image-amd64)"
  fi
  # Plain -amd64 flavour only: -cloud-amd64 lacks 9p.
  grep -oE 'Depends: linux-image-[0-9][^ ]*-amd64$' <<<"$deps" | head -n1 | sed 's/^Depends: //'
}

# Downloads PACKAGE's .deb into $debs_dir unless one is cached; prints its path.
download_deb() {
  local pkg="$1" deb
  mkdir -p "$debs_dir"
  deb="$(find "$debs_dir" -maxdepth 1 -name "${pkg}_*.deb" -print | sort | tail -n1)"
  if [[ -n "$deb" ]]; then
    echo "$deb"
    return 0
  fi
  log "downloading $pkg"
  local apt_opts=(-qq)
  if [[ "$(id -u)" -eq 0 ]]; then
    # apt's _apt sandbox user cannot write into the cache dir; we are root anyway.
    apt_opts+=(-o APT::Sandbox::User=root)
  fi
  if ! (cd "$debs_dir" && apt-get "${apt_opts[@]}" download "$pkg" >&2); then
    # Stale package lists point at a version the archive no longer has.
    apt_update
    (cd "$debs_dir" && apt-get "${apt_opts[@]}" download "$pkg" >&2)
  fi
  deb="$(find "$debs_dir" -maxdepth 1 -name "${pkg}_*.deb" -print | sort | tail -n1)"
  [[ -n "$deb" ]] || die "apt-get download $pkg produced no .deb"
  echo "$deb"
}

build_hash="$(cat "${BASH_SOURCE[0]}" "$script_dir/init.sh" | sha256sum | cut -c1-12)"
current_env="$cache_dir/current.env"

print_result() {
  echo "KVER=$1"
  echo "VMLINUZ=$2"
  echo "INITRD=$3"
}

pkg="$(kernel_package || true)"
if [[ -z "$pkg" ]]; then
  # No apt lists and no way to refresh them: fall back to the last build.
  if [[ -f "$current_env" ]]; then
    log "cannot resolve the kernel package; reusing the cached build"
    cat "$current_env"
    exit 0
  fi
  die "cannot find the kernel package that linux-image-amd64 depends on"
fi
kver="${pkg#linux-image-}"
out_dir="$cache_dir/kernels/$kver"
vmlinuz="$out_dir/vmlinuz-$kver"
initrd="$out_dir/initrd-$kver-$build_hash.img"

if [[ "$force" -eq 0 && -s "$vmlinuz" && -s "$initrd" ]]; then
  log "cached: $initrd"
  print_result "$kver" "$vmlinuz" "$initrd" | tee "$current_env"
  exit 0
fi

start_s="$(date +%s)"
kernel_deb="$(download_deb "$pkg")"
busybox_deb="$(download_deb busybox-static)"

work="$(mktemp -d "$cache_dir/build.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

log "unpacking $(basename "$kernel_deb")"
dpkg -x "$kernel_deb" "$work/kernel"
dpkg -x "$busybox_deb" "$work/busybox"
kdir="$work/kernel/lib/modules/$kver"
[[ -d "$kdir" ]] || die "$kernel_deb has no lib/modules/$kver"
[[ -f "$work/kernel/boot/vmlinuz-$kver" ]] || die "$kernel_deb has no boot/vmlinuz-$kver"
depmod -b "$work/kernel" "$kver"

stage="$work/initramfs"
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,etc,tmp,run,mnt,lower,upper,newroot,usr/bin,usr/sbin}
mkdir -p "$stage/lib/modules/$kver"

# Resolve the load order: every module's dependencies, then the module itself,
# each file once. Boot modules first; the on-demand ones are only copied.
load_order=()
boot_count=0
declare -A seen=()
for mod in "${boot_modules[@]}" - "${ondemand_modules[@]}"; do
  if [[ "$mod" == "-" ]]; then
    boot_count="${#load_order[@]}"
    continue
  fi
  deps_out="$(modprobe -d "$work/kernel" -S "$kver" --show-depends "$mod")" ||
    die "module $mod not found in $pkg"
  while IFS= read -r line; do
    [[ "$line" == "insmod "* ]] || continue # "builtin NAME" needs nothing
    path="${line#insmod }"
    path="${path%"${path##*[! ]}"}" # trailing blanks (and module options, none here)
    rel="${path#"$work/kernel"}"
    if [[ -z "${seen[$rel]:-}" ]]; then
      seen[$rel]=1
      load_order+=("$rel")
    fi
  done <<<"$deps_out"
done

for rel in "${load_order[@]}"; do
  mkdir -p "$stage$(dirname "$rel")"
  cp "$work/kernel$rel" "$stage$rel"
done
printf '%s\n' "${load_order[@]:0:$boot_count}" >"$stage/etc/vm-modules"
# depmod output, so that modprobe works too (the guest bind-mounts
# /lib/modules into the chroot).
for f in modules.order modules.builtin modules.builtin.modinfo; do
  if [[ -f "$kdir/$f" ]]; then
    cp "$kdir/$f" "$stage/lib/modules/$kver/"
  fi
done
depmod -b "$stage" "$kver"

cp "$work/busybox/bin/busybox" "$stage/bin/busybox"
chmod 0755 "$stage/bin/busybox"
# Applet links, made at build time so the guest does not spend time on it.
while read -r applet; do
  case "$applet" in
    busybox | "") continue ;;
  esac
  if [[ ! -e "$stage/bin/$applet" ]]; then
    ln -s busybox "$stage/bin/$applet"
  fi
done < <("$stage/bin/busybox" --list)

# The kernel's module autoloader runs /sbin/modprobe in the initramfs root.
ln -s ../bin/busybox "$stage/sbin/modprobe"

cp "$script_dir/init.sh" "$stage/init"
chmod 0755 "$stage/init"
echo "$kver" >"$stage/etc/vm-kver"
echo "$build_hash" >"$stage/etc/vm-build-hash"

mkdir -p "$out_dir"
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) |
  gzip -6 >"$initrd.tmp"
mv "$initrd.tmp" "$initrd"
cp "$work/kernel/boot/vmlinuz-$kver" "$vmlinuz.tmp"
mv "$vmlinuz.tmp" "$vmlinuz"
# Drop earlier builds: initrds of this kernel made by older scripts, other
# kernel versions and their packages.
find "$out_dir" -maxdepth 1 -name "initrd-$kver-*.img" ! -name "$(basename "$initrd")" -delete
find "$cache_dir/kernels" -mindepth 1 -maxdepth 1 -type d ! -name "$kver" -exec rm -rf -- {} +
find "$debs_dir" -maxdepth 1 -name 'linux-image-*.deb' ! -name "${pkg}_*.deb" -delete

log "built $initrd ($(du -h "$initrd" | cut -f1), ${#load_order[@]} modules, $boot_count loaded at boot) in $(($(date +%s) - start_s)) s"
print_result "$kver" "$vmlinuz" "$initrd" | tee "$current_env"
