#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build nsresd and show it working end to end, as root on Debian 12: a
# private system-like bus, the real polkitd with nsresd's policy, the daemon,
# and `nsresctl run -- id` as an unprivileged user in a freshly allocated
# user namespace. Everything started here is stopped again on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD

if [ "$(id -u)" != 0 ]; then
        echo "demo.sh: run as root (it starts a bus, polkitd and nsresd)" >&2
        exit 1
fi

packages=(meson ninja-build pkg-config gcc libc6-dev libsystemd-dev libbpf-dev bpftool clang-14 llvm-14
          libjson-c-dev libnl-3-dev libnl-route-3-dev dbus-daemon polkitd util-linux gettext)
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ -f build/meson-private/coredata.dat ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
ninja -C build >/dev/null

# Pinned BPF objects live on bpffs.
mounted_bpffs=0
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != bpf_fs ]; then
        mount -t bpf bpf /sys/fs/bpf
        mounted_bpffs=1
fi

run=$(mktemp -d /tmp/nsresd-demo.XXXXXX)
chmod 0755 "$run"
bpfdir=/sys/fs/bpf/nsresd-demo-$$
pids=()
cleanup() {
        for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
        rm -rf "$bpfdir" 2>/dev/null || true
        [ $mounted_bpffs = 1 ] && umount /sys/fs/bpf 2>/dev/null || true
        rm -rf "$run"
}
trap cleanup EXIT

cat > "$run/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$run/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
  <include ignore_missing="no">$repo/dbus/org.freedesktop.NamespaceResource1.conf</include>
</busconfig>
CONF

dbus-daemon --config-file="$run/bus.conf" --nofork --nopidfile 2>"$run/bus.log" &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$run/system_bus_socket
for _ in $(seq 100); do [ -S "$run/system_bus_socket" ] && break; sleep 0.05; done
chmod 0666 "$run/system_bus_socket"

# polkitd reads actions and rules only from its own directories. It runs in
# a mount namespace of its own where the policy as installed (into a staging
# directory) is bound over its actions directory; the host's polkit
# configuration is not touched.
meson install -C build --no-rebuild --quiet --destdir "$run/dest"
policy=$(find "$run/dest" -path '*/polkit-1/actions/org.freedesktop.NamespaceResource1.policy')
chmod -R a+rX "$run/dest"
unshare --mount --propagation private -- /bin/sh -c \
        "mount --bind '$(dirname "$policy")' /usr/share/polkit-1/actions && exec /usr/lib/polkit-1/polkitd --no-debug" \
        2>"$run/polkitd.log" &
pids+=($!)

# The BPF LSM cannot be used on every machine; permissive allocates anyway
# and says so in the Restriction property.
printf '[Security]\nRestriction=permissive\n' > "$run/nsresd.conf"
build/daemon/nsresd --config="$run/nsresd.conf" --state-dir="$run/state" --bpf-dir="$bpfdir" 2>"$run/nsresd.log" &
pids+=($!)

for _ in $(seq 200); do
        busctl --system status org.freedesktop.NamespaceResource1 >/dev/null 2>&1 && \
        busctl --system status org.freedesktop.PolicyKit1 >/dev/null 2>&1 && break
        sleep 0.05
done

as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
ctl=build/client/nsresctl
echo "--- nsresd runs with Restriction=permissive: where the kernel cannot run the BPF LSM"
echo "    restriction, transient ranges are handed out without it. Restriction is now:"
echo "    $(busctl --system get-property org.freedesktop.NamespaceResource1 /org/freedesktop/NamespaceResource1 \
        org.freedesktop.NamespaceResource1.Manager Restriction)"
grep -o 'The BPF LSM restriction is unavailable\. [^.]*' "$run/nsresd.log" | sed 's/^/    /' || true
echo "--- nsresctl info"
"${as_nobody[@]}" $ctl info
echo "--- as user nobody: nsresctl run -- id"
"${as_nobody[@]}" $ctl run -- id
echo "--- as user nobody: nsresctl run -- cat /proc/self/uid_map /proc/self/gid_map"
"${as_nobody[@]}" $ctl run -- cat /proc/self/uid_map /proc/self/gid_map
# Released when the kernel destroys the namespace, a few tens of ms later.
for _ in $(seq 100); do
        [ "$($ctl info --json | grep -o '"Namespaces": *[0-9]*' | grep -o '[0-9]*$')" = 0 ] && break
        sleep 0.05
done
echo "--- nsresd log"
cat "$run/nsresd.log"
