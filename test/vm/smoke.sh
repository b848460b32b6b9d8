#!/usr/bin/env bash
# End-to-end dm-thin smoke test, meant to run INSIDE the VM (as root):
#   test/vm/run-in-vm.sh -- bash test/vm/smoke.sh
#   test/vm/run-in-vm.sh -- bash test/vm/smoke.sh --record test/fixtures/dmsetup
#
# Proves the chain the driver relies on: two sparse files on loop devices, a
# thin-pool on them, a thin volume with ext4, a snapshot of it (suspend,
# create_snap, resume), the snapshot mounted read-only with the file intact,
# set_transaction_id, and a full cleanup.
#
# --record DIR also saves the raw outputs of dmsetup status/table/info/ls and
# the exit status + stderr of failing dmsetup calls into DIR, for parser tests
# (see DIR/INDEX.txt for what each file holds and the command that made it).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"

record_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --record)
      [[ $# -ge 2 ]] || {
        echo "smoke: --record needs a directory" >&2
        exit 2
      }
      record_dir="$2"
      shift 2
      ;;
    -h | --help)
      sed -n '2,13p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "smoke: unknown argument: $1" >&2
      exit 2
      ;;
  esac
done

export DM_DISABLE_UDEV=1
export LC_ALL=C

pool=smoke-pool
thin=smoke-thin
snap=smoke-snap
full_pool=smoke-full-pool
full_thin=smoke-full-thin
# The thin volume gets a DM uuid (the pool does not), so that recordings
# show both an empty and a set uuid column.
thin_uuid=SMOKE-THIN-0000

start_s="$(date +%s.%N)"
step_s="$start_s"
work="$(mktemp -d /tmp/smoke.XXXXXX)"
mnt="$work/mnt"
snap_mnt="$work/snap-mnt"
loops=()
mounts=()
dm_devices=()

say() {
  local now
  now="$(date +%s.%N)"
  awk -v a="$step_s" -v b="$now" -v msg="$*" 'BEGIN { printf "smoke: [+%5.2fs] %s\n", b - a, msg }'
  step_s="$now"
}

die() {
  echo "smoke: FAILED: $*" >&2
  exit 1
}

cleanup() {
  local rc=$? i
  set +e
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null
  done
  for ((i = ${#dm_devices[@]} - 1; i >= 0; i--)); do
    dmsetup remove "${dm_devices[i]}" 2>/dev/null
  done
  for i in "${loops[@]}"; do
    losetup -d "$i" 2>/dev/null
  done
  rm -rf -- "$work"
  exit "$rc"
}
trap cleanup EXIT

[[ "$(id -u)" -eq 0 ]] || die "must run as root (in the VM: test/vm/run-in-vm.sh -- bash test/vm/smoke.sh)"
[[ -c /dev/mapper/control ]] || die "/dev/mapper/control missing: no device-mapper in this kernel"
for dev in "$pool" "$thin" "$snap" "$full_pool" "$full_thin"; do
  if dmsetup info "$dev" >/dev/null 2>&1; then
    die "device $dev already exists"
  fi
done

# loop_attach FILE SIZE: a sparse FILE of SIZE on a fresh loop device.
loop_attach() {
  truncate -s "$2" "$1"
  local dev
  dev="$(losetup -f --show "$1")"
  loops+=("$dev")
  echo "$dev"
}

sectors() {
  blockdev --getsz "$1"
}

# Recording helpers (no-ops without --record).
declare -a index=()
rec() { # rec FILE CMD...: stdout of CMD into FILE (CMD must succeed)
  local file="$1"
  shift
  if [[ -n "$record_dir" ]]; then
    "$@" >"$record_dir/$file"
    index+=("$file: stdout of: $*")
  fi
}
rec_err() { # rec_err FILE CMD...: "exit=N" line, then the stderr of CMD (stdout, if any, in FILE.stdout.txt)
  local file="$1" rc=0
  shift
  [[ -n "$record_dir" ]] || return 0
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  {
    echo "exit=$rc"
    cat "$work/err"
  } >"$record_dir/$file"
  index+=("$file: first line exit=STATUS, then the stderr of: $*")
  if [[ -s "$work/out" ]]; then
    cp "$work/out" "$record_dir/${file%.txt}.stdout.txt"
    index+=("${file%.txt}.stdout.txt: stdout of the same command")
  fi
  echo "smoke: recorded $file (exit $rc): $(head -n1 "$work/err")"
}

if [[ -n "$record_dir" ]]; then
  mkdir -p "$record_dir"
  record_dir="$(cd "$record_dir" && pwd)"
fi

say "kernel $(uname -r); $(dmsetup version | tr '\n' ' ')"
if [[ -n "$record_dir" ]]; then
  {
    echo "uname -r: $(uname -r)"
    dmsetup version
    dmsetup targets
  } >"$record_dir/versions.txt"
  index+=("versions.txt: uname -r, dmsetup version, dmsetup targets")
fi

# --- pool -------------------------------------------------------------------
mkdir -p "$mnt" "$snap_mnt"
meta_loop="$(loop_attach "$work/meta.img" 64M)"
data_loop="$(loop_attach "$work/data.img" 1G)"
dd if=/dev/zero of="$meta_loop" bs=4096 count=1 conv=fsync status=none
data_sectors="$(sectors "$data_loop")"
# data block 128 sectors (64 KiB), low water mark 32768 blocks, skip zeroing.
dmsetup create "$pool" --table "0 $data_sectors thin-pool $meta_loop $data_loop 128 32768 1 skip_block_zeroing"
dm_devices+=("$pool")
say "pool $pool created on $meta_loop (meta) + $data_loop (data)"
rec status-pool-fresh.txt dmsetup status "$pool"

# --- thin volume --------------------------------------------------------------
dmsetup message "$pool" 0 "create_thin 0"
thin_sectors=$((1024 * 1024 * 1024 / 512))
dmsetup create "$thin" -u "$thin_uuid" --table "0 $thin_sectors thin /dev/mapper/$pool 0"
dm_devices+=("$thin")
[[ -b "/dev/mapper/$thin" ]] || die "/dev/mapper/$thin was not created"
say "thin $thin (id 0) active"
mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1 "/dev/mapper/$thin"
say "mkfs.ext4 done"
mount "/dev/mapper/$thin" "$mnt"
mounts+=("$mnt")
echo "hello from dm-thin $$" >"$mnt/hello.txt"
dd if=/dev/urandom of="$mnt/blob" bs=1M count=8 status=none
sync
say "mounted, wrote hello.txt + 8 MiB, synced"

rec status-pool.txt dmsetup status "$pool"
rec status-thin.txt dmsetup status "$thin"
rec table-pool.txt dmsetup table "$pool"
rec table-thin.txt dmsetup table "$thin"
rec info-c-pool.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid "$pool"
rec info-c-thin.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid "$thin"
rec info-c-pool-thin.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid "$pool" "$thin"
rec info-c-all.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid
rec info-c-default.txt dmsetup info -c
rec info-pool.txt dmsetup info "$pool"
rec info-thin.txt dmsetup info "$thin"
rec ls-target-thin.txt dmsetup ls --target thin
rec ls-target-thin-pool.txt dmsetup ls --target thin-pool
rec ls.txt dmsetup ls
rec status-all.txt dmsetup status
rec table-all.txt dmsetup table

# --- snapshot -----------------------------------------------------------------
dmsetup suspend "$thin"
rec info-thin-suspended.txt dmsetup info "$thin"
rec info-c-thin-suspended.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid "$thin"
dmsetup message "$pool" 0 "create_snap 1 0"
dmsetup resume "$thin"
say "snapshot 1 of 0 created (suspend, create_snap, resume)"
dmsetup create "$snap" --table "0 $thin_sectors thin /dev/mapper/$pool 1"
dm_devices+=("$snap")
mount -o ro,noload "/dev/mapper/$snap" "$snap_mnt"
mounts+=("$snap_mnt")
grep -qx "hello from dm-thin $$" "$snap_mnt/hello.txt" || die "snapshot does not show hello.txt"
cmp -s "$mnt/blob" "$snap_mnt/blob" || die "snapshot blob differs from the origin's"
say "snapshot $snap mounted ro,noload: hello.txt and blob match"
rec status-snap.txt dmsetup status "$snap"
rec table-snap.txt dmsetup table "$snap"
rec status-pool-with-snap.txt dmsetup status "$pool"

# --- transaction id -----------------------------------------------------------
dmsetup message "$pool" 0 "set_transaction_id 0 1"
txid="$(dmsetup status "$pool" | awk '{ print $4 }')"
[[ "$txid" == "1" ]] || die "transaction id is '$txid' after set_transaction_id 0 1"
dd if=/dev/urandom of="$mnt/blob2" bs=1M count=4 status=none
sync
say "set_transaction_id 0 1: status shows transaction id $txid"
rec status-pool-txid1.txt dmsetup status "$pool"
rec status-thin-after-writes.txt dmsetup status "$thin"

# --- metadata snapshot: thin ids, inactive devices included -----------------------
dmsetup message "$pool" 0 "create_thin 7"
dmsetup message "$pool" 0 reserve_metadata_snap
ids="$(thin_ls --metadata-snap --no-headers -o DEV "$meta_loop" | tr -s ' \n' ' ')"
[[ "$ids" == "0 1 7 " ]] || die "thin_ls on the metadata snapshot shows '$ids', expected 0 1 7"
say "thin_ls on a metadata snapshot lists thin ids $ids(7 is inactive)"
rec status-pool-held-snap.txt dmsetup status "$pool"
rec thin-ls-dev.txt thin_ls --metadata-snap --no-headers -o DEV "$meta_loop"
rec_err err-reserve-metadata-snap-held.txt dmsetup message "$pool" 0 reserve_metadata_snap
dmsetup message "$pool" 0 release_metadata_snap
dmsetup message "$pool" 0 "delete 7"

# --- errors -------------------------------------------------------------------
if [[ -n "$record_dir" ]]; then
  rec_err err-info-nonexistent.txt dmsetup info nonexistent
  rec_err err-info-c-nonexistent.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid nonexistent
  rec_err err-status-nonexistent.txt dmsetup status nonexistent
  rec_err err-table-nonexistent.txt dmsetup table nonexistent
  rec_err err-remove-nonexistent.txt dmsetup remove nonexistent
  rec_err err-suspend-nonexistent.txt dmsetup suspend nonexistent
  rec_err err-resume-nonexistent.txt dmsetup resume nonexistent
  rec_err err-message-nonexistent.txt dmsetup message nonexistent 0 "create_thin 7"
  rec_err err-create-thin-exists.txt dmsetup message "$pool" 0 "create_thin 0"
  rec_err err-create-snap-exists.txt dmsetup message "$pool" 0 "create_snap 1 0"
  rec_err err-create-snap-missing-origin.txt dmsetup message "$pool" 0 "create_snap 8 42"
  rec_err err-delete-missing.txt dmsetup message "$pool" 0 "delete 99"
  rec_err err-set-transaction-id-mismatch.txt dmsetup message "$pool" 0 "set_transaction_id 5 6"
  rec_err err-message-unknown.txt dmsetup message "$pool" 0 "frobnicate 1"
  rec_err err-create-name-exists.txt dmsetup create "$thin" --table "0 $thin_sectors thin /dev/mapper/$pool 0"
  rec_err err-remove-busy.txt dmsetup remove "$thin"
  rec_err err-remove-pool-busy.txt dmsetup remove "$pool"
  rec_err err-delete-active.txt dmsetup message "$pool" 0 "delete 0"
  rec_err err-create-thin-missing-id.txt dmsetup create smoke-missing --table "0 $thin_sectors thin /dev/mapper/$pool 77"
  dmsetup remove smoke-missing >/dev/null 2>&1 || true
  rec_err ok-info-exists.txt dmsetup info "$thin"
  say "error cases recorded"
fi

# --- cleanup ------------------------------------------------------------------
umount "$snap_mnt"
umount "$mnt"
mounts=()
dmsetup remove "$snap"
dmsetup remove "$thin"
dmsetup message "$pool" 0 "delete 1"
dmsetup message "$pool" 0 "delete 0"
rec status-pool-after-deletes.txt dmsetup status "$pool"
dmsetup remove "$pool"
dm_devices=()
for dev in "${loops[@]}"; do
  losetup -d "$dev"
done
loops=()
say "cleaned up (umount, remove, delete messages, remove pool, losetup -d)"
if [[ -n "$record_dir" ]]; then
  rec_err ok-ls-target-thin-none.txt dmsetup ls --target thin
  rec_err ok-info-c-none.txt dmsetup info -c --noheadings --separator '|' -o name,major,minor,attr,open,segments,events,uuid
  rec_err ok-status-none.txt dmsetup status
fi

# --- full pool (recording only) -------------------------------------------------
if [[ -n "$record_dir" ]]; then
  fmeta="$(loop_attach "$work/full-meta.img" 8M)"
  fdata="$(loop_attach "$work/full-data.img" 16M)"
  dd if=/dev/zero of="$fmeta" bs=4096 count=1 conv=fsync status=none
  dmsetup create "$full_pool" --table "0 $(sectors "$fdata") thin-pool $fmeta $fdata 128 16 1 error_if_no_space"
  dm_devices+=("$full_pool")
  dmsetup message "$full_pool" 0 "create_thin 0"
  dmsetup create "$full_thin" --table "0 $((64 * 1024 * 2)) thin /dev/mapper/$full_pool 0"
  dm_devices+=("$full_thin")
  rec status-full-pool-empty.txt dmsetup status "$full_pool"
  rec table-full-pool.txt dmsetup table "$full_pool"
  rc=0
  dd if=/dev/urandom of="/dev/mapper/$full_thin" bs=1M count=32 oflag=direct status=none 2>"$work/dd-err" || rc=$?
  [[ "$rc" -ne 0 ]] || die "writing 32 MiB into a 16 MiB pool did not fail"
  {
    echo "exit=$rc"
    cat "$work/dd-err"
  } >"$record_dir/err-dd-full-pool.txt"
  index+=("err-dd-full-pool.txt: exit + stderr of dd writing 32 MiB (oflag=direct) into a thin volume of a 16 MiB error_if_no_space pool")
  rec status-full-pool.txt dmsetup status "$full_pool"
  rec status-full-thin.txt dmsetup status "$full_thin"
  rec_err ok-create-thin-full-pool.txt dmsetup message "$full_pool" 0 "create_thin 1"
  say "full pool: $(dmsetup status "$full_pool")"
  dmsetup remove "$full_thin"
  dmsetup message "$full_pool" 0 "delete 0"
  rec status-full-pool-after-delete.txt dmsetup status "$full_pool"
  dmsetup remove "$full_pool"
  dm_devices=()
  for dev in "${loops[@]}"; do
    losetup -d "$dev"
  done
  loops=()
  say "full pool recorded and removed"

  {
    echo "Raw dmsetup outputs recorded by test/vm/smoke.sh --record in the test VM"
    echo "(kernel $(uname -r), DM_DISABLE_UDEV=1, LC_ALL=C)."
    echo "pool=$pool (no uuid), thin=$thin (id 0, uuid $thin_uuid), snap=$snap (id 1)."
    echo "Pool: 64 MiB metadata + 1 GiB data on loop devices, 128-sector blocks,"
    echo "low water mark 32768, skip_block_zeroing. Full pool: 8 MiB metadata +"
    echo "16 MiB data, low water mark 16, error_if_no_space."
    echo
    printf '%s\n' "${index[@]}"
  } >"$record_dir/INDEX.txt"
fi

# --- node -----------------------------------------------------------------------
node_bin="$repo_root/node_modules/.bin/node"
if [[ -x "$node_bin" ]]; then
  say "node: $("$node_bin" --version)"
else
  say "skipping node: $node_bin not installed yet"
fi

awk -v a="$start_s" -v b="$(date +%s.%N)" 'BEGIN { printf "smoke: OK in %.1fs\n", b - a }'
