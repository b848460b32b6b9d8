#!/usr/bin/env bash
# The bare command sequence the driver runs for each operation (src/pool/devices.ts),
# on a pool of its own: the limit of this design. Runs in the test VM as root.
# Each timed op prints one line `us=N` (N = microseconds from the first command to the point
# where the driver replies, measured with $EPOCHREALTIME, so bash's own start-up is not
# counted). The driver stamps the pool's transaction id after it replies, so the stamp
# (`set_transaction_id`) runs here too, after the clock stops.
#   ops.sh setup DIR POOL DATA_BYTES META_BYTES     build a loop-file pool like the driver's
#   ops.sh create POOL ID                            create_thin (+ set_transaction_id, untimed)
#   ops.sh snap-active POOL NEWID ORIGID ORIGNAME    suspend, create_snap, resume (+ set_transaction_id, untimed)
#                                                    (also prints window_us=: suspend..resume)
#   ops.sh restore POOL NEWID SNAPID                 create_snap of an inactive snapshot (+ set_transaction_id)
#   ops.sh activate POOL NAME ID BYTES               dmsetup create (untimed helper)
#   ops.sh stage POOL NAME ID BYTES MNT FSTYPE       dmsetup create + mount of an existing fs
#   ops.sh unstage NAME MNT                          umount + dmsetup remove (untimed helper)
#   ops.sh expand POOL NAME ID BYTES                 reload + resume (resume suspends to swap the table)
#   ops.sh delete POOL ID [NAME]                     (remove) + delete (+ set_transaction_id, untimed)
#   ops.sh walk                                      dmsetup status + info + table of everything
#   ops.sh mkfs DEV FSTYPE default|driver            mkfs with defaults (discard) or the driver's options
#   ops.sh teardown POOL DIR
set -euo pipefail
export DM_DISABLE_UDEV=1 LC_ALL=C

t0=0
start() { t0=${EPOCHREALTIME/./}; }
stop() { local t1=${EPOCHREALTIME/./}; echo "us=$((t1 - t0))"; }
tx() { dmsetup status "$1" | awk '{print $4}'; }
devno() { dmsetup info -c --noheadings -o major,minor --separator : "$1"; }
settx() { dmsetup message "$1" 0 "set_transaction_id $2 $(($2 + 1))"; }

op=$1; shift
case "$op" in
  setup)
    dir=$1 pool=$2 data=$3 meta=$4
    mkdir -p "$dir"
    truncate -s "$data" "$dir/data.img"; truncate -s "$meta" "$dir/metadata.img"
    dd if=/dev/zero of="$dir/metadata.img" bs=4096 count=1 conv=notrunc status=none
    d=$(losetup -f --show "$dir/data.img"); m=$(losetup -f --show "$dir/metadata.img")
    # Same geometry as the driver's default pool: 64 KiB blocks, block zeroing on.
    dmsetup create "$pool" --table "0 $((data / 512)) thin-pool $m $d 128 $((data / 65536 / 100)) 0"
    ;;
  create)
    pool=$1 id=$2; t=$(tx "$pool")
    start
    dmsetup message "$pool" 0 "create_thin $id"
    stop
    settx "$pool" "$t"
    ;;
  snap-active)
    pool=$1 id=$2 orig=$3 oname=$4; t=$(tx "$pool")
    start
    dmsetup suspend "$oname"
    w0=${EPOCHREALTIME/./}
    dmsetup message "$pool" 0 "create_snap $id $orig"
    dmsetup resume "$oname"
    w1=${EPOCHREALTIME/./}
    stop
    settx "$pool" "$t"
    echo "window_us=$((w1 - t0))"
    echo "msg_us=$((w1 - w0))"
    ;;
  restore)
    pool=$1 id=$2 snap=$3; t=$(tx "$pool")
    start
    dmsetup message "$pool" 0 "create_snap $id $snap"
    stop
    settx "$pool" "$t"
    ;;
  activate)
    pool=$1 name=$2 id=$3 bytes=$4; dn=$(devno "$pool")
    dmsetup create "$name" --table "0 $((bytes / 512)) thin $dn $id"
    ;;
  stage)
    pool=$1 name=$2 id=$3 bytes=$4 mnt=$5 fs=$6; dn=$(devno "$pool")
    mkdir -p "$mnt"
    opts=(); [[ $fs == xfs ]] && opts=(-o nouuid)
    start
    dmsetup create "$name" --table "0 $((bytes / 512)) thin $dn $id"
    mount -t "$fs" "${opts[@]}" "/dev/mapper/$name" "$mnt"
    stop
    ;;
  unstage)
    name=$1 mnt=$2
    umount "$mnt"; dmsetup remove "$name"
    ;;
  expand)
    pool=$1 name=$2 id=$3 bytes=$4; dn=$(devno "$pool")
    start
    dmsetup reload "$name" --table "0 $((bytes / 512)) thin $dn $id"
    dmsetup resume "$name"
    stop
    ;;
  delete)
    pool=$1 id=$2 name=${3:-}; t=$(tx "$pool")
    start
    if [[ -n $name ]] && dmsetup info "$name" >/dev/null 2>&1; then dmsetup remove "$name"; fi
    dmsetup message "$pool" 0 "delete $id"
    stop
    settx "$pool" "$t"
    ;;
  walk)
    start
    dmsetup status >/dev/null
    dmsetup info -c --noheadings >/dev/null
    dmsetup table >/dev/null
    stop
    ;;
  mkfs)
    dev=$1 fs=$2 how=$3
    start
    case "$fs:$how" in
      ext4:default) mkfs.ext4 -F -q "$dev" ;;
      ext4:driver) mkfs.ext4 -F -q -E nodiscard,assume_storage_prezeroed=1 "$dev" ;;
      xfs:default) mkfs.xfs -f -q "$dev" ;;
      xfs:driver) mkfs.xfs -f -q -K "$dev" ;;
      *) echo "mkfs: bad $fs:$how" >&2; exit 2 ;;
    esac
    stop
    ;;
  teardown)
    pool=$1 dir=$2
    for n in $(dmsetup table | awk -v p="$(devno "$pool")" '$4=="thin" && $5==p {sub(":","",$1); print $1}'); do dmsetup remove "$n" || true; done
    dmsetup remove "$pool" || true
    for f in "$dir/data.img" "$dir/metadata.img"; do
      for l in $(losetup -j "$f" -n -O NAME); do losetup -d "$l"; done
    done
    ;;
  *) echo "ops.sh: unknown op $op" >&2; exit 2 ;;
esac
