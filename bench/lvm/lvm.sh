#!/usr/bin/env bash
# The LVM-thin equivalent of each driver operation (what TopoLVM / OpenEBS LVM LocalPV run),
# with Debian's lvm2 in the test VM and udev kept out of it. Each timed op prints `us=N`
# (microseconds around the lvm commands, measured with $EPOCHREALTIME).
#   lvm.sh setup DIR VG DATA_BYTES                   a PV on a loop file, a VG and a thin pool VG/pool (64 KiB chunks, zeroing on)
#   lvm.sh create VG NAME SIZE                       lvcreate -V SIZE -T VG/pool -n NAME
#   lvm.sh snapshot VG NAME ORIGIN                   lvcreate -s VG/ORIGIN -n NAME (thin snapshot)
#   lvm.sh stage VG NAME MNT FSTYPE                  lvchange -ay -K + mount
#   lvm.sh unstage VG NAME MNT                       umount + lvchange -an (untimed helper)
#   lvm.sh activate|deactivate VG NAME               untimed helpers
#   lvm.sh expand VG NAME SIZE                       lvextend -L SIZE
#   lvm.sh delete VG NAME                            lvremove -y
#   lvm.sh teardown VG DIR
set -euo pipefail
export DM_DISABLE_UDEV=1 LC_ALL=C LVM_SUPPRESS_FD_WARNINGS=1

# No udev in the guest; the filter keeps LVM from scanning the other contenders' devices.
# (setup records the PV's loop device in /run/bench-lvm-pv.)
pv=$(cat /run/bench-lvm-pv 2>/dev/null || echo '/dev/loop[0-9]+')
filter="\"a|^$pv\$|\", \"r|.*|\""
CONF="activation{udev_sync=0 udev_rules=0 monitoring=0} devices{obtain_device_list_from_udev=0 global_filter=[ $filter ]} global{use_lvmpolld=0}"

t0=0
start() { t0=${EPOCHREALTIME/./}; }
stop() { local t1=${EPOCHREALTIME/./}; echo "us=$((t1 - t0))"; }
L() { local cmd=$1; shift; lvm "$cmd" --config "$CONF" "$@"; }

op=$1; shift
case "$op" in
  setup)
    dir=$1 vg=$2 data=$3
    mkdir -p "$dir"; truncate -s "$data" "$dir/pv.img"
    modprobe dm-snapshot 2>/dev/null || true
    dev=$(losetup -f --show "$dir/pv.img")
    echo "$dev" >/run/bench-lvm-pv
    pv=$dev; filter="\"a|^$pv\$|\", \"r|.*|\""
    CONF="activation{udev_sync=0 udev_rules=0 monitoring=0} devices{obtain_device_list_from_udev=0 global_filter=[ $filter ]} global{use_lvmpolld=0}"
    L pvcreate -q "$dev" >/dev/null
    L vgcreate -q "$vg" "$dev" >/dev/null
    L lvcreate -q -L $((data / 1024 / 1024 * 90 / 100))M -c 64k -Zy --poolmetadatasize 1G -T "$vg/pool" >/dev/null
    ;;
  create)
    vg=$1 name=$2 size=$3
    start; L lvcreate -q -V "$size" -T "$vg/pool" -n "$name" >/dev/null; stop ;;
  snapshot)
    vg=$1 name=$2 origin=$3
    start; L lvcreate -q -s "$vg/$origin" -n "$name" >/dev/null; stop ;;
  stage)
    vg=$1 name=$2 mnt=$3 fs=$4; mkdir -p "$mnt"
    opts=(); [[ $fs == xfs ]] && opts=(-o nouuid)
    start
    L lvchange -q -ay -K "$vg/$name"
    mount -t "$fs" "${opts[@]}" "/dev/mapper/$vg-$name" "$mnt"
    stop ;;
  unstage)
    vg=$1 name=$2 mnt=$3
    umount "$mnt"; L lvchange -q -an "$vg/$name" ;;
  activate) L lvchange -q -ay -K "$1/$2" ;;
  deactivate) L lvchange -q -an "$1/$2" ;;
  expand)
    vg=$1 name=$2 size=$3
    start; L lvextend -q -L "$size" "$vg/$name" >/dev/null; stop ;;
  delete)
    vg=$1 name=$2
    start; L lvremove -q -y "$vg/$name" >/dev/null; stop ;;
  teardown)
    vg=$1 dir=$2
    L vgremove -q -f "$vg" >/dev/null 2>&1 || true
    for l in $(losetup -j "$dir/pv.img" -n -O NAME); do losetup -d "$l"; done
    ;;
  *) echo "lvm.sh: unknown op $op" >&2; exit 2 ;;
esac
