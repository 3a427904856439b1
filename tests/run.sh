#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The project's test command: installs what the build and the tests need,
# builds, runs the unit tests, then the integration tests against the real
# daemon on a private system bus. Run as root on Debian 12; safe to run again.
# With CI set in the environment, a skipped integration test fails the run.

set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
        meson ninja-build pkg-config gcc libc6-dev
        libsystemd-dev libbpf-dev bpftool clang-14 llvm-14
        libjson-c-dev libnl-3-dev libnl-route-3-dev
        python3 python3-pytest python3-dbusmock python3-dbus python3-gi gir1.2-glib-2.0
        dbus-daemon dbus-bin systemd binutils polkitd util-linux coreutils
        gettext scdoc libxml2-utils strace man-db iproute2 bubblewrap
        qemu-system-x86 busybox-static e2fsprogs kmod
)

missing=()
for p in "${packages[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
                missing+=("$p")
        fi
done
if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ -f build/meson-private/coredata.dat ]; then
        meson setup --reconfigure build
else
        meson setup build
fi
ninja -C build
meson test -C build --print-errorlogs
# A unit test skips (exit 77) only when its prerequisites are missing; CI has them.
if [ -n "${CI:-}" ] && grep -q '"result": "SKIP"' build/meson-logs/testlog.json; then
        echo "run.sh: unit tests were skipped in CI:" >&2
        grep '"result": "SKIP"' build/meson-logs/testlog.json >&2
        exit 1
fi

# The distribution's python: pytest, dbus and dbusmock are its packages.
# tests/vm boots Debian's stock kernel in qemu to check the BPF LSM
# restriction, which this host's kernel refuses to load.
export NSRESD_BUILD_DIR="$PWD/build"
exec /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/integration tests/vm
