#!/bin/sh
# /init of the initramfs built by test/vm/build-initramfs.sh (busybox sh).
#
# 1. loads the modules listed in /etc/vm-modules, in order (more are in
#    /lib/modules for the kernel to load on demand through /sbin/modprobe);
# 2. mounts the host's root (9p tag "hostroot", read-only) under an overlay
#    with a tmpfs upper layer at /newroot;
# 3. mounts the checkout (9p tag "checkout", writable) at the same absolute
#    path as on the host inside /newroot, plus proc, sysfs, devtmpfs, devpts,
#    and tmpfs on /tmp, /run and /dev/shm;
# 4. chroots into /newroot and runs .cache/vm/runs/RUN/cmd.sh (written by
#    run-in-vm.sh) with its output on /dev/ttyS1, which qemu connects to the
#    host script's stdout (the kernel's own console is ttyS0, kept in a file);
# 5. writes the exit status to .cache/vm/runs/RUN/status, syncs, powers off.
#
# Kernel command line parameters read here:
#   vmharness.run=RUN      (required) the run directory's name
#   vmharness.cache=MODE   9p cache mode for both shares (default loose)
#   vmharness.msize=BYTES  9p msize (default 512000, the virtio maximum)

PATH=/bin:/sbin
export PATH

mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/null >/dev/console 2>&1

# ttyS1 is the channel to the host's stdout; "\n" must reach it as "\n".
out=/dev/ttyS1
if ! stty -F "$out" -onlcr 2>/dev/null; then
  out=/dev/console
fi

say() {
  echo "vm: $*" >"$out"
}

poweroff_now() {
  sync
  echo o >/proc/sysrq-trigger
  sleep 30
  exit 1 # init dies: panic=-1 and qemu's -no-reboot end qemu as well
}

fail() {
  say "init failed: $*"
  poweroff_now
}

kver="$(cat /etc/vm-kver)"
while read -r mod; do
  case "$mod" in
    */crc32c-intel.ko)
      # Needs SSE4.2, which the emulated CPU lacks: optional.
      insmod "$mod" 2>/dev/null
      ;;
    *)
      insmod "$mod" || say "insmod $mod failed"
      ;;
  esac
done </etc/vm-modules

run=""
cache="loose"
msize="512000"
read -r cmdline </proc/cmdline
for arg in $cmdline; do
  case "$arg" in
    vmharness.run=*) run="${arg#vmharness.run=}" ;;
    vmharness.cache=*) cache="${arg#vmharness.cache=}" ;;
    vmharness.msize=*) msize="${arg#vmharness.msize=}" ;;
  esac
done
[ -n "$run" ] || fail "no vmharness.run= on the kernel command line"
ninep="trans=virtio,version=9p2000.L,msize=$msize,cache=$cache"

mount -t 9p -o "$ninep,ro" hostroot /lower || fail "cannot mount the host root (9p)"
# The overlay's upper layer may grow to 16 GiB and /tmp to 75% of the RAM: tmpfs only takes
# memory for what is written, so sparse loop files cost little. The upper layer's limit is
# what the driver's file pools see as their filesystem's room (statfs): the suites' pools
# together are promised more than a guest's RAM, and write far less than it.
mount -t tmpfs -o size=16g,mode=0755 tmpfs /upper || fail "cannot mount the overlay's tmpfs"
mkdir -p /upper/upper /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/upper,workdir=/upper/work /newroot ||
  fail "cannot mount the overlay"

mkdir -p /mnt/checkout
mount -t 9p -o "$ninep" checkout /mnt/checkout || fail "cannot mount the checkout (9p)"
run_rel=".cache/vm/runs/$run"
[ -f "/mnt/checkout/$run_rel/repo" ] || fail "no $run_rel/repo in the checkout share"
IFS= read -r repo <"/mnt/checkout/$run_rel/repo"
umount /mnt/checkout
case "$repo" in
  /*) ;;
  *) fail "repo path '$repo' is not absolute" ;;
esac

mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o ptmxmode=0666,mode=0620 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o size=75%,mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/lock /newroot/lib/modules
mount -o bind /lib/modules /newroot/lib/modules

# The checkout last, so that a checkout under /tmp or /run stays visible.
mkdir -p "/newroot$repo" || fail "cannot create $repo in the guest"
mount -t 9p -o "$ninep" checkout "/newroot$repo" || fail "cannot mount the checkout at $repo"

# dm-mod registers its misc device as "mapper/control"; devtmpfs normally
# creates the node, but make sure it exists.
if [ ! -c /newroot/dev/mapper/control ]; then
  minor="$(awk '$2 == "device-mapper" { print $1 }' /proc/misc)"
  if [ -n "$minor" ]; then
    mkdir -p /newroot/dev/mapper
    mknod -m 0600 /newroot/dev/mapper/control c 10 "$minor"
  else
    say "warning: no device-mapper in /proc/misc"
  fi
fi

# Loopback only (no other network): tests serve gRPC, /metrics and the API test double on 127.0.0.1.
ip link set lo up 2>/dev/null || busybox ip link set lo up 2>/dev/null || busybox ifconfig lo 127.0.0.1 up 2>/dev/null || say "warning: could not bring up lo"

read -r uptime _ </proc/uptime
say "guest ready after ${uptime}s of guest uptime (kernel $kver)"

chroot /newroot /bin/bash "$repo/$run_rel/cmd.sh" </dev/null >"$out" 2>&1
status=$?

echo "$status" >"/newroot$repo/$run_rel/status"
poweroff_now
