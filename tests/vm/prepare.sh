#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Prepares what the VM tests boot: installs the host tools (qemu, busybox,
# mkfs.ext4, kmod) when missing, and fills CACHE_DIR/kernel with Debian's
# stock kernel for this release (the one linux-image-amd64 depends on), its
# config and the modules the guest loads, uncompressed and in load order.
#
# The kernel package is only unpacked, never installed. Run as root; running
# again reuses the cache and downloads nothing while the package is current.
#
# Usage: prepare.sh CACHE_DIR

set -euo pipefail

if [ $# -ne 1 ]; then
        echo "usage: $0 CACHE_DIR" >&2
        exit 2
fi
mkdir -p "$1"
cache=$(realpath "$1")

# What the guest needs besides built-in code: overlayfs for the tests, loop
# and ext4 to mount a real filesystem image. Their dependencies are added.
wanted_modules=(overlay loop ext4)

host_packages=(qemu-system-x86 busybox-static e2fsprogs kmod xz-utils zstd)

apt_updated=
apt_update_once() {
        if [ -z "$apt_updated" ]; then
                apt-get -o DPkg::Lock::Timeout=600 update
                apt_updated=1
        fi
}

missing=()
for p in "${host_packages[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
                missing+=("$p")
        fi
done
if [ ${#missing[@]} -gt 0 ]; then
        apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y --no-install-recommends "${missing[@]}"
fi

# Two runs sharing a build directory must not fill the cache at the same time.
exec 9>"$cache/.lock"
flock 9

kernel_dir="$cache/kernel"

kernel_package() {
        apt-cache depends linux-image-amd64 2>/dev/null |
                sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

# Sets package, version, stamp and deb from apt's current lists.
resolve() {
        package=$(kernel_package)
        if [ -z "$package" ]; then
                apt_update_once
                package=$(kernel_package)
        fi
        if [ -z "$package" ]; then
                echo "prepare.sh: apt-cache does not know what linux-image-amd64 depends on" >&2
                return 1
        fi
        version=$(apt-cache policy "$package" | sed -n 's/^ *Candidate: //p')
        if [ -z "$version" ] || [ "$version" = "(none)" ]; then
                echo "prepare.sh: no candidate version of $package" >&2
                return 1
        fi
        stamp="$package $version ${wanted_modules[*]}"
        # The file name apt-get download gives: epochs are written as %3a.
        deb="$cache/${package}_${version//:/%3a}_amd64.deb"
}

is_current() {
        [ -f "$kernel_dir/stamp" ] && [ "$(cat "$kernel_dir/stamp")" = "$stamp" ]
}

download() {
        # apt's sandbox user cannot write to a build directory owned by root.
        (cd "$cache" && apt-get -o APT::Sandbox::User=root download "$package=$version")
}

resolve
if is_current; then
        echo "prepare.sh: $kernel_dir is current ($package $version)"
        exit 0
fi

if [ ! -f "$deb" ]; then
        # Packages of an older kernel are dropped: only the current one is kept.
        rm -f "$cache"/linux-image-*.deb
        # Stale lists name a version the mirror no longer has: refresh once.
        if ! download; then
                apt_update_once
                resolve
                if is_current; then
                        echo "prepare.sh: $kernel_dir is current ($package $version)"
                        exit 0
                fi
                if ! download; then
                        if [ -f "$kernel_dir/stamp" ]; then
                                echo "prepare.sh: cannot download $package $version;" \
                                        "keeping $(cat "$kernel_dir/stamp")" >&2
                                exit 0
                        fi
                        exit 1
                fi
        fi
fi

work=$(mktemp -d "$cache/.unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg -x "$deb" "$work/root"

# Debian 12 ships the modules under /lib/modules, later releases under
# /usr/lib/modules; depmod wants the directory above lib/modules.
modules_order=$(find "$work/root" -path '*/lib/modules/*/modules.order' | head -n 1)
if [ -z "$modules_order" ]; then
        echo "prepare.sh: $package has no modules.order" >&2
        exit 1
fi
release_dir=$(dirname "$modules_order")
release=$(basename "$release_dir")
base=$(dirname "$(dirname "$(dirname "$release_dir")")")

config="$work/root/boot/config-$release"
vmlinuz="$work/root/boot/vmlinuz-$release"
for f in "$config" "$vmlinuz"; do
        if [ ! -f "$f" ]; then
                echo "prepare.sh: $package has no ${f#"$work/root"}" >&2
                exit 1
        fi
done

lsm=$(sed -n 's/^CONFIG_LSM="\(.*\)"$/\1/p' "$config")
if [ -z "$lsm" ]; then
        echo "prepare.sh: CONFIG_LSM is not set in config-$release" >&2
        exit 1
fi
if ! grep -qx 'CONFIG_BPF_LSM=y' "$config"; then
        echo "prepare.sh: $package is built without CONFIG_BPF_LSM" >&2
        exit 1
fi

# The package carries no modules.dep (its postinst runs depmod), so make one
# in the unpacked tree and let modprobe resolve dependencies and softdeps.
depmod -b "$base" "$release"

out="$work/kernel"
mkdir -p "$out/modules"
cp "$vmlinuz" "$out/vmlinuz"
cp "$config" "$out/config"
: >"$out/modules.load"
loaded=()
for m in "${wanted_modules[@]}"; do
        # Prints "insmod PATH" per module to load, dependencies first, and
        # "builtin NAME" for built-in code.
        while read -r what path _; do
                [ "$what" = insmod ] || continue
                name=$(basename "$path")
                name=${name%.ko*}
                if printf '%s\n' "${loaded[@]}" | grep -qx -- "$name"; then
                        continue
                fi
                loaded+=("$name")
                # busybox insmod loads plain ELF objects only.
                case "$path" in
                *.ko) cp "$path" "$out/modules/$name.ko" ;;
                *.ko.xz) xz -dc "$path" >"$out/modules/$name.ko" ;;
                *.ko.zst) zstd -qdc "$path" >"$out/modules/$name.ko" ;;
                *.ko.gz) gzip -dc "$path" >"$out/modules/$name.ko" ;;
                *)
                        echo "prepare.sh: unknown module file $path" >&2
                        exit 1
                        ;;
                esac
                echo "$name.ko" >>"$out/modules.load"
        done < <(modprobe -d "$base" -S "$release" --show-depends "$m")
done

ext4=$(sed -n 's/^CONFIG_EXT4_FS=\(.\)$/\1/p' "$config")
case "$ext4" in
y) ext4=builtin ;;
m) ext4=module ;;
*) ext4=missing ;;
esac

cat >"$out/kernel.env" <<EOF
KERNEL_PACKAGE=$package
KERNEL_PACKAGE_VERSION=$version
KERNEL_RELEASE=$release
CONFIG_LSM=$lsm
EXT4=$ext4
MODULES=${loaded[*]}
EOF
echo "$stamp" >"$out/stamp"

rm -rf "$kernel_dir"
mv "$out" "$kernel_dir"
echo "prepare.sh: $kernel_dir holds $package $version (release $release)"
echo "prepare.sh: CONFIG_LSM=$lsm; ext4 $ext4; modules: ${loaded[*]}"
