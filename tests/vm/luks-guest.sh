#!/usr/bin/env bash
# Boot a throwaway qemu guest that holds real dm-crypt volumes and run a
# binary under test (normally palisade-agent) against them.
#
# Why a guest: the kernels these machines and CI run on have no
# device-mapper, so `cryptsetup open` fails on the host. A stock Debian kernel
# under qemu TCG (no KVM: /dev/kvm here is a PVM device a stock kernel does not
# boot on) has dm-mod and dm-crypt as modules, so the guest can open LUKS2
# volumes, stack LVM on them and mount them, exactly as a laptop would.
#
# Usage:
#   tests/vm/luks-guest.sh --agent PATH --work DIR
#                          [--agent-args "ARGS"] [--capture-fixtures DEST]
#                          [--timeout SECONDS]
#
#   --agent PATH       binary (or script) to run in the guest as
#                      /usr/bin/palisade-agent; ELF files get their ldd
#                      libraries copied too, anything else is copied as is.
#   --work DIR         scratch directory: disk images, initramfs, console.log.
#   --agent-args ARGS  arguments for the agent, split on whitespace (no
#                      quoting); default "check --rule disk_encryption --json".
#   --capture-fixtures DEST
#                      unpack the sysfs/procfs tree captured after each stage
#                      into DEST/<scenario>/ and write DEST/SOURCES.md.
#   --timeout SECONDS  wall-clock limit for qemu; default 300 (see below).
#
# Stages run in the guest, each followed by one run of the agent:
#   luks         LUKS2 on vda, ext4, mounted at /srv/data     (expect pass)
#   lvm-on-luks  LUKS2 on vdb, PV/VG/LV inside, ext4 on the LV,
#                mounted at /srv/lvm                          (expect pass)
#   plain        vdc1 ext4 at /srv/plain, vdc2 plain swap     (expect fail)
# The guest's own "/" is the initramfs (fstype rootfs), which is not a
# persistent volume; an agent must skip it like tmpfs.
#
# Output markers (on the console, one per line; also echoed to stdout):
#   ===PALISADE-GUEST kernel=<uname -r> cryptsetup=<ver> lvm=<ver>===
#   ===PALISADE-BEGIN stage=<stage> exit=<agent exit code>===
#   <agent stdout>
#   ===PALISADE-END stage=<stage>===
#   ===PALISADE-STDERR-BEGIN stage=<stage>===
#   <agent stderr>
#   ===PALISADE-STDERR-END stage=<stage>===
#   ===PALISADE-TREE-BEGIN scenario=<scenario>===
#   <base64 of a gzipped tar of the host-root-like tree>
#   ===PALISADE-TREE-END scenario=<scenario>===
#   ===PALISADE-FAILED stage=<stage> step=<what failed>===   (guest error)
# Scenarios: luks -> luks-only, lvm-on-luks -> lvm-on-luks,
# plain -> mixed-with-plain. Tree sections are not echoed to stdout.
#
# Exit status: 0 when every stage printed its END marker (whatever the agent
# said: judging verdicts is the caller's job), 1 when the guest failed or
# timed out, 2 on a usage error.
#
# Measured on the CI-like machine (Debian 12, 2 cores, qemu 7.2 TCG, guest
# kernel 6.1.0-56-amd64), six runs: a full run takes 20-29 s wall clock
# (22 s typical on an idle machine). About 3 s go to the disk images and the
# ~9 MiB zstd initramfs, the rest to qemu: firmware and kernel decompression
# ~6 s, then ~13 s of guest uptime to power-off (module loading ~4 s, the
# three stages ~6 s). The first run on a fresh machine also pays for the
# apt-get install of whatever is missing.
set -Eeuo pipefail
# set -e alone exits silently; say where it happened.
trap 'printf "luks-guest: error: command failed at line %s\n" "$LINENO" >&2' ERR

# The timeout is ~15x a normal run: TCG on a loaded CI machine is slow, but a
# guest stuck waiting for a device must never stall CI for long.
readonly DEFAULT_TIMEOUT_SECONDS=300
readonly DEFAULT_AGENT_ARGS="check --rule disk_encryption --json"

# Fixed LUKS UUIDs so that re-capturing the fixtures gives the same dm/uuid
# strings (LVM's own UUIDs are random, vgcreate cannot be told one).
readonly LUKS_UUID_DATA="6f1c3a52-7d0e-4b8e-9a61-2c5d8e0f4a11"
readonly LUKS_UUID_LVM="9b2e4d71-3c5a-4f60-8e12-7a4b6c9d0e22"

# Modules the guest must load. virtio_* reach the disks, dm_mod/dm_crypt/xts
# open LUKS2 (aes-xts-plain64 is cryptsetup's default), algif_skcipher lets
# cryptsetup decrypt the keyslot through the kernel crypto API instead of a
# temporary dm mapping, ext4 formats the volumes. aes, cbc and sha256 are
# built into Debian's kernel.
readonly REQUIRED_MODULES=(virtio_pci virtio_blk dm_mod dm_crypt xts algif_skcipher algif_hash ext4)
# Faster implementations; the guest CPU may lack the instructions, in which
# case the generic built-in code is used and the load failure is harmless.
readonly OPTIONAL_MODULES=(aesni_intel crc32c_intel)

# The stage whose END marker proves the guest ran to completion.
readonly LAST_STAGE="plain"

# sbin directories are not on a non-login PATH everywhere, and every tool
# below lives there.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

die() {
    printf 'luks-guest: error: %s\n' "$*" >&2
    exit 1
}

note() {
    printf 'luks-guest: %s\n' "$*" >&2
}

usage() {
    # Prints the "Usage:" block of the header comment.
    sed -n '/^# Usage:/,/^# Stages/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- arguments ---------------------------------------------------------------

agent=""
work=""
agent_args="$DEFAULT_AGENT_ARGS"
fixtures_dest=""
timeout_seconds="$DEFAULT_TIMEOUT_SECONDS"
invocation="$(printf '%q ' "$0" "$@")"

while [ $# -gt 0 ]; do
    case "$1" in
        --agent) [ $# -ge 2 ] || usage; agent="$2"; shift 2 ;;
        --work) [ $# -ge 2 ] || usage; work="$2"; shift 2 ;;
        --agent-args) [ $# -ge 2 ] || usage; agent_args="$2"; shift 2 ;;
        --capture-fixtures) [ $# -ge 2 ] || usage; fixtures_dest="$2"; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout_seconds="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) printf 'luks-guest: unknown argument: %s\n' "$1" >&2; usage ;;
    esac
done
if [ -z "$agent" ] || [ -z "$work" ]; then usage; fi
[ -f "$agent" ] || die "agent not found: $agent"
case "$timeout_seconds" in ''|*[!0-9]*) die "--timeout needs whole seconds" ;; esac

mkdir -p "$work"
work="$(cd "$work" && pwd)"
agent="$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")"
if [ -n "$fixtures_dest" ]; then
    mkdir -p "$fixtures_dest"
    fixtures_dest="$(cd "$fixtures_dest" && pwd)"
fi

# --- prerequisites -------------------------------------------------------------

# Each entry is "command:package". busybox supplies the guest's shell and
# small tools; the static build needs no libraries, but a dynamic one works
# too because it is copied with its ldd libraries like everything else.
readonly REQUIRED_TOOLS=(
    qemu-system-x86_64:qemu-system-x86
    cryptsetup:cryptsetup
    dmsetup:dmsetup
    lvm:lvm2
    lsblk:util-linux
    mke2fs:e2fsprogs
    kmod:kmod
    depmod:kmod
    cpio:cpio
    busybox:busybox-static
    sfdisk:fdisk
    ldd:libc-bin
    timeout:coreutils
    base64:coreutils
    gzip:gzip
    tar:tar
)

# Prints the newest kernel version that has both /boot/vmlinuz-<ver> and
# /lib/modules/<ver>: the guest loads modules, so the two must match.
find_guest_kernel() {
    local image version best=""
    for image in /boot/vmlinuz-*; do
        [ -e "$image" ] || continue
        version="${image#/boot/vmlinuz-}"
        [ -d "/lib/modules/$version/kernel" ] || continue
        best="$(printf '%s\n%s\n' "$best" "$version" | sed '/^$/d' | sort -V | tail -n 1)"
    done
    printf '%s' "$best"
}

ensure_prerequisites() {
    local entry tool package missing=()
    for entry in "${REQUIRED_TOOLS[@]}"; do
        tool="${entry%%:*}"
        package="${entry#*:}"
        command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
    done
    [ -n "$(find_guest_kernel)" ] || missing+=(linux-image-amd64)
    [ ${#missing[@]} -eq 0 ] && return 0

    # Deduplicate: several tools come from one package.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [ "$(id -u)" -eq 0 ] || die "missing packages (need root to install): ${missing[*]}"
    note "installing: ${missing[*]}"
    # The lock timeout lets this wait for another apt run (CI images often
    # run one at boot) instead of failing at once.
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        "${missing[@]}" >&2

    for entry in "${REQUIRED_TOOLS[@]}"; do
        command -v "${entry%%:*}" >/dev/null 2>&1 || die "still missing after install: ${entry%%:*}"
    done
    [ -n "$(find_guest_kernel)" ] || die "no /boot/vmlinuz-<ver> with a matching /lib/modules/<ver>"
}

# --- disk images ---------------------------------------------------------------

# luksFormat only writes a header, which works on a plain file; opening the
# volumes needs device-mapper and so happens in the guest. pbkdf2 with 1000
# iterations keeps both luksFormat here and luksOpen under TCG fast; the
# default argon2id would take seconds and hundreds of MiB per open.
make_luks_image() {
    local image="$1" size="$2" key="$3" uuid="$4"
    rm -f "$image" "$key"
    truncate -s "$size" "$image"
    head -c 64 /dev/urandom >"$key"
    cryptsetup luksFormat --batch-mode --type luks2 \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --uuid "$uuid" --key-file "$key" "$image"
}

make_images() {
    local disks="$work/disks"
    mkdir -p "$disks"
    # A LUKS2 header takes 16 MiB, so 48 MiB leaves 32 MiB for ext4.
    make_luks_image "$disks/luks.img" 48M "$disks/luks.key" "$LUKS_UUID_DATA"
    # 64 MiB leaves room for the LUKS2 header, LVM metadata and a 4 MiB-
    # extent LV big enough for ext4.
    make_luks_image "$disks/lvm.img" 64M "$disks/lvm.key" "$LUKS_UUID_LVM"
    # The plain disk gets a partition table so that the fixtures also show
    # how a partition (with its `partition` file) looks: p1 for ext4, p2 for
    # an unencrypted swap area.
    rm -f "$disks/plain.img"
    truncate -s 64M "$disks/plain.img"
    printf 'label: dos\n,40MiB,L\n,,S\n' | sfdisk --quiet "$disks/plain.img" >/dev/null
}

# --- initramfs -----------------------------------------------------------------

root=""

is_elf() {
    [ "$(LC_ALL=C head -c 4 "$1")" = $'\x7fELF' ]
}

# Copies a host file to the same path inside the initramfs root. The root has
# a merged-/usr layout, so /lib/... and /usr/lib/... both land in usr/lib.
copy_into_root() {
    local source="$1" target="${2:-$1}"
    [ -e "$root$target" ] && return 0
    mkdir -p "$root$(dirname "$target")"
    cp -L "$source" "$root$target"
}

# Copies an executable and, if it is a dynamic ELF file, every library ldd
# names plus the dynamic loader (ldd prints the loader as a bare path).
copy_program() {
    local source="$1" target="${2:-$1}" library
    copy_into_root "$source" "$target"
    chmod 0755 "$root$target"
    is_elf "$source" || return 0
    # ldd exits non-zero for a static executable; that simply means no
    # libraries to copy.
    while read -r library; do
        copy_into_root "$library"
    done < <(ldd "$source" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' || true)
}

copy_modules() {
    local version="$1" module line path
    local modules_dir="/lib/modules/$version"
    for module in "${REQUIRED_MODULES[@]}" "${OPTIONAL_MODULES[@]}"; do
        # --show-depends prints one "insmod <path>" line per module in load
        # order, softdeps included, or "builtin <name>" for built-in code.
        while read -r line; do
            case "$line" in
                insmod\ *)
                    path="$(printf '%s\n' "$line" | awk '{ print $2 }')"
                    copy_into_root "$path"
                    ;;
            esac
        done < <(modprobe -S "$version" --show-depends "$module")
    done
    # depmod needs these to regenerate modules.dep(.bin) for just the
    # modules copied; the host's index would list thousands of absent files.
    for path in modules.order modules.builtin modules.builtin.modinfo; do
        [ -e "$modules_dir/$path" ] && copy_into_root "$modules_dir/$path"
    done
    depmod -b "$root" "$version"
}

write_init() {
    # The guest init is POSIX sh for busybox ash. It runs as PID 1: if it
    # exited the kernel would panic, so every error path ends in poweroff.
    cat >"$root/init" <<'INIT'
#!/bin/sh
# Guest /init generated by tests/vm/luks-guest.sh; see that file.
export PATH=/usr/sbin:/usr/bin:/bb
# No udev runs here: libdevmapper must create /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
export LVM_SUPPRESS_FD_WARNINGS=1
# lvm would otherwise wait for udev, look for a devices file and try to
# start dmeventd, none of which exist in this guest.
LVM_CONFIG='activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 }'

stage=boot

power_off() {
    sync
    poweroff -f
    # poweroff -f should not return; this is the fallback.
    echo o >/proc/sysrq-trigger
    sleep 5
}

fail() {
    echo "===PALISADE-FAILED stage=$stage step=$*==="
    dmesg | tail -n 30
    power_off
}

# Waits for a device node that a driver creates asynchronously, with a
# deadline of 10 s (100 tries of 0.1 s): enough for TCG, short enough that a
# missing disk fails fast.
wait_for() {
    tries=0
    while [ ! -b "$1" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 100 ] || fail "wait-for-$1"
        sleep 0.1
    done
}

run_agent() {
    rc=0
    set -f
    # Word splitting is intended: the args file holds space-separated args.
    # shellcheck disable=SC2046
    /usr/bin/palisade-agent $(cat /palisade/agent-args) >/tmp/agent.out 2>/tmp/agent.err || rc=$?
    set +f
    echo "===PALISADE-BEGIN stage=$stage exit=$rc==="
    cat /tmp/agent.out
    # Keep the END marker on its own line even without a final newline.
    [ -s /tmp/agent.out ] && [ -n "$(tail -c 1 /tmp/agent.out)" ] && echo
    echo "===PALISADE-END stage=$stage==="
    echo "===PALISADE-STDERR-BEGIN stage=$stage==="
    cat /tmp/agent.err
    [ -s /tmp/agent.err ] && [ -n "$(tail -c 1 /tmp/agent.err)" ] && echo
    echo "===PALISADE-STDERR-END stage=$stage==="
}

# Builds a host-root-like copy of exactly what the disk check reads and
# prints it as base64 of a gzipped tar. Slave links become empty files named
# after the slave, since git cannot hold sysfs symlinks usefully.
capture_tree() {
    scenario=$1
    tree=/tmp/tree/$scenario
    rm -rf "$tree"
    mkdir -p "$tree/proc/self" "$tree/sys/class/block"
    cat /proc/self/mountinfo >"$tree/proc/self/mountinfo"
    cat /proc/swaps >"$tree/proc/swaps"
    for device in /sys/class/block/*; do
        [ -e "$device" ] || continue
        name=${device##*/}
        out=$tree/sys/class/block/$name
        mkdir -p "$out"
        cat "$device/dev" >"$out/dev"
        for file in removable partition; do
            if [ -f "$device/$file" ]; then cat "$device/$file" >"$out/$file"; fi
        done
        for slave in "$device"/slaves/*; do
            [ -e "$slave" ] || continue
            mkdir -p "$out/slaves"
            : >"$out/slaves/${slave##*/}"
        done
        if [ -d "$device/dm" ]; then
            mkdir -p "$out/dm"
            cat "$device/dm/uuid" >"$out/dm/uuid"
            cat "$device/dm/name" >"$out/dm/name"
        fi
    done
    echo "===PALISADE-TREE-BEGIN scenario=$scenario==="
    tar -C "$tree" -czf - . | base64
    echo "===PALISADE-TREE-END scenario=$scenario==="
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# cryptsetup and lvm keep their locks under /run.
mount -t tmpfs tmpfs /run
mkdir -p /run/cryptsetup /run/lock/lvm /tmp /srv/data /srv/lvm /srv/plain
# Only emergencies on the console, so kernel messages cannot land inside a
# marker section.
echo 1 >/proc/sys/kernel/printk
# SeaBIOS leaves terminal escape sequences without a newline on the
# console; an empty line keeps them off the first marker line.
echo

while read -r module; do
    modprobe "$module" || fail "modprobe-$module"
done </palisade/required-modules
optional_loaded=""
while read -r module; do
    if modprobe "$module" 2>/dev/null; then
        optional_loaded="$optional_loaded $module"
    fi
done </palisade/optional-modules
# Not a marker: for console.log readers wondering which AES code ran.
echo "palisade-init: optional modules loaded:${optional_loaded:- none}"
for disk in /dev/vda /dev/vdb /dev/vdc /dev/vdc1 /dev/vdc2; do
    wait_for "$disk"
done

echo "===PALISADE-GUEST kernel=$(uname -r) cryptsetup=$(cryptsetup --version | awk '{ print $2 }') lvm=$(lvm version | awk '/LVM version/ { print $3 }')==="

stage=luks
cryptsetup open --key-file /palisade/luks.key /dev/vda cryptdata || fail cryptsetup-open
mkfs.ext4 -q -F /dev/mapper/cryptdata || fail mkfs
mount -t ext4 /dev/mapper/cryptdata /srv/data || fail mount
run_agent
capture_tree luks-only

stage=lvm-on-luks
cryptsetup open --key-file /palisade/lvm.key /dev/vdb cryptlvm || fail cryptsetup-open
lvm pvcreate -q --config "$LVM_CONFIG" /dev/mapper/cryptlvm || fail pvcreate
lvm vgcreate -q --config "$LVM_CONFIG" vgpalisade /dev/mapper/cryptlvm || fail vgcreate
lvm lvcreate -q --config "$LVM_CONFIG" -n data -l 100%FREE vgpalisade || fail lvcreate
# lvcreate already activated the LV; vgchange is what a booting system runs.
lvm vgchange -q --config "$LVM_CONFIG" -ay vgpalisade || fail vgchange
mkfs.ext4 -q -F /dev/mapper/vgpalisade-data || fail mkfs
mount -t ext4 /dev/mapper/vgpalisade-data /srv/lvm || fail mount
run_agent
capture_tree lvm-on-luks

stage=plain
mkfs.ext4 -q -F /dev/vdc1 || fail mkfs
mount -t ext4 /dev/vdc1 /srv/plain || fail mount
mkswap /dev/vdc2 >/dev/null || fail mkswap
swapon /dev/vdc2 || fail swapon
run_agent
capture_tree mixed-with-plain

power_off
INIT
    chmod 0755 "$root/init"
}

# Prints the compressor command for the initramfs: zstd decompresses fastest
# under TCG, gzip is the fallback every kernel config has.
initramfs_compressor() {
    local version="$1"
    if command -v zstd >/dev/null 2>&1 &&
        grep -qx 'CONFIG_RD_ZSTD=y' "/boot/config-$version" 2>/dev/null; then
        printf 'zstd -q -10 -T0'
    else
        printf 'gzip -6'
    fi
}

build_initramfs() {
    local version="$1" tool path applet compressor
    root="$work/initramfs-root"
    rm -rf "$root"
    mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,bb,proc,sys,dev,run,tmp,etc,palisade}
    ln -s usr/bin "$root/bin"
    ln -s usr/sbin "$root/sbin"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"

    # Real tools go to their usual paths; busybox applets go to /bb, last on
    # the guest PATH, so e.g. busybox's own mke2fs or modprobe never win.
    for tool in cryptsetup dmsetup lvm lsblk mke2fs kmod; do
        path="$(command -v "$tool")"
        copy_program "$(readlink -f "$path")" "$path"
    done
    ln -s mke2fs "$root$(dirname "$(command -v mke2fs)")/mkfs.ext4"
    for tool in modprobe insmod lsmod depmod; do
        ln -s "$(command -v kmod)" "$root/usr/sbin/$tool"
    done
    copy_program "$(readlink -f "$(command -v busybox)")" /usr/bin/busybox
    for applet in $(busybox --list); do
        ln -s /usr/bin/busybox "$root/bb/$applet"
    done
    ln -s busybox "$root/usr/bin/sh"
    # mke2fs reads its defaults (ext4 features, inode size) from this file.
    [ -e /etc/mke2fs.conf ] && copy_into_root /etc/mke2fs.conf
    # glibc's pthread_cancel dlopens libgcc_s; ldd cannot see that.
    for path in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
        if [ -e "$path" ]; then copy_into_root "$path"; break; fi
    done

    copy_program "$agent" /usr/bin/palisade-agent

    copy_modules "$version"

    cp "$work/disks/luks.key" "$root/palisade/luks.key"
    cp "$work/disks/lvm.key" "$root/palisade/lvm.key"
    printf '%s\n' "$agent_args" >"$root/palisade/agent-args"
    # One module name per line, for the guest's `while read` loops.
    printf '%s\n' "${REQUIRED_MODULES[@]}" >"$root/palisade/required-modules"
    printf '%s\n' "${OPTIONAL_MODULES[@]}" >"$root/palisade/optional-modules"
    write_init

    compressor="$(initramfs_compressor "$version")"
    # Sorted, root-owned entries keep the archive independent of the host's
    # directory order and of who runs the script.
    (cd "$root" && find . -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --quiet) |
        $compressor >"$work/initramfs.img"
}

# --- run and report --------------------------------------------------------------

run_guest() {
    local version="$1" status=0
    local disks="$work/disks"
    # -nic none: no network is needed, and the default NIC would want an
    # iPXE option ROM that a --no-install-recommends qemu may lack.
    timeout -k 10 "$timeout_seconds" qemu-system-x86_64 \
        -accel tcg -cpu max -m 768 -nographic -no-reboot -nic none \
        -kernel "/boot/vmlinuz-$version" -initrd "$work/initramfs.img" \
        -append "console=ttyS0 panic=-1 quiet" \
        -drive "file=$disks/luks.img,format=raw,if=virtio" \
        -drive "file=$disks/lvm.img,format=raw,if=virtio" \
        -drive "file=$disks/plain.img,format=raw,if=virtio" \
        </dev/null >"$work/console.log" 2>&1 || status=$?
    # The serial console ends lines with CR LF, and SeaBIOS writes terminal
    # escape sequences; both go so that markers can be matched whole.
    tr -d '\r' <"$work/console.log" |
        sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >"$work/console.txt"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        note "qemu did not finish within ${timeout_seconds}s"
    elif [ "$status" -ne 0 ]; then
        note "qemu exited with status $status"
    fi
}

print_agent_sections() {
    awk '/^===PALISADE-(GUEST|FAILED) .*===$/ { print; next }
         /^===PALISADE-(STDERR-)?BEGIN / { inside = 1 }
         inside { print }
         /^===PALISADE-(STDERR-)?END / { inside = 0 }' "$work/console.txt"
}

# Unpacks one scenario's tree from the console transcript.
extract_tree() {
    local scenario="$1" destination="$2"
    rm -rf "${destination:?}/$scenario"
    mkdir -p "$destination/$scenario"
    awk -v begin="===PALISADE-TREE-BEGIN scenario=$scenario===" \
        -v end="===PALISADE-TREE-END scenario=$scenario===" \
        '$0 == end { inside = 0 } inside { print } $0 == begin { inside = 1 }' \
        "$work/console.txt" | base64 -d | tar -xzf - -C "$destination/$scenario"
}

write_sources() {
    local destination="$1" guest_line host_os
    guest_line="$(sed -n 's/^===PALISADE-GUEST \(.*\)===$/\1/p' "$work/console.txt" | head -n 1)"
    host_os="$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
    cat >"$destination/SOURCES.md" <<EOF
# Where these disk-encryption fixtures come from

Captured from a real Linux guest, not written by hand.

- Captured: $(date -u +%Y-%m-%d) by \`tests/vm/luks-guest.sh\`.
- Command: \`${invocation% }\`
- Guest: qemu-system-x86_64 $(qemu-system-x86_64 --version | awk 'NR == 1 { print $4 }') (TCG), Debian kernel, busybox initramfs, no udev.
- Guest versions: ${guest_line}.
- Host that built the images: ${host_os}.

Each directory is a host-root-like tree holding only what the disk check reads:
\`proc/self/mountinfo\`, \`proc/swaps\`, and for every block device
\`sys/class/block/<name>/{dev,removable,partition}\` (the last two only where
sysfs has them), \`dm/uuid\` and \`dm/name\` for device-mapper devices, and
\`slaves/<slave>\`. In sysfs each slave is a symlink; here it is an EMPTY
regular file named after the slave device, because git cannot hold sysfs
symlinks usefully. A device without slaves has no \`slaves/\` directory here
(git does not keep empty directories). The files were copied with \`cat\` inside
the guest, so their contents (including trailing newlines) are byte-for-byte
what the kernel returned.

Disks (virtio): vda = LUKS2 (aes-xts-plain64, pbkdf2) opened as \`cryptdata\`,
UUID $LUKS_UUID_DATA; vdb = LUKS2 opened as \`cryptlvm\`, UUID
$LUKS_UUID_LVM, holding PV/VG \`vgpalisade\`/LV \`data\`; vdc = DOS partition
table, vdc1 ext4, vdc2 swap, neither encrypted. The guest's "/" is the
initramfs (fstype \`rootfs\`), which is not a persistent volume.

| scenario | captured after | mounts | expected verdict |
|---|---|---|---|
| \`luks-only\` | stage \`luks\` | dm-0 (cryptdata, CRYPT-LUKS2-…) ext4 at /srv/data | pass |
| \`lvm-on-luks\` | stage \`lvm-on-luks\` | the above, plus dm-2 (vgpalisade-data, LVM-…) over dm-1 (cryptlvm, CRYPT-LUKS2-…) over vdb, ext4 at /srv/lvm | pass |
| \`mixed-with-plain\` | stage \`plain\` | the above, plus vdc1 ext4 at /srv/plain and vdc2 as swap | fail |

The exact commands each stage ran (cryptsetup open, lvm pvcreate/vgcreate/
lvcreate/vgchange, mkfs.ext4, mount, mkswap/swapon) are in the guest \`/init\`
that \`write_init\` in \`tests/vm/luks-guest.sh\` generates.

To re-capture: run the command above from the repository root (any \`--agent\`
works; the tree is captured by the guest, not by the agent).
EOF
}

main() {
    local version stage scenario incomplete=0
    ensure_prerequisites
    version="$(find_guest_kernel)"
    note "guest kernel $version; work directory $work"
    make_images
    build_initramfs "$version"
    note "initramfs $(du -h "$work/initramfs.img" | cut -f1); booting (TCG, timeout ${timeout_seconds}s)"
    run_guest "$version"
    print_agent_sections

    if grep -q '^===PALISADE-FAILED ' "$work/console.txt"; then
        note "the guest reported a failure (see above and $work/console.log)"
        incomplete=1
    fi
    for stage in luks lvm-on-luks "$LAST_STAGE"; do
        if ! grep -qx "===PALISADE-END stage=$stage===" "$work/console.txt"; then
            note "no END marker for stage $stage"
            incomplete=1
        fi
    done
    if [ "$incomplete" -ne 0 ]; then
        die "guest did not complete every stage; full console log: $work/console.log"
    fi

    if [ -n "$fixtures_dest" ]; then
        for scenario in luks-only lvm-on-luks mixed-with-plain; do
            extract_tree "$scenario" "$fixtures_dest"
        done
        write_sources "$fixtures_dest"
        note "fixtures written to $fixtures_dest"
    fi
}

main
