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
        libclang-rt-14-dev valgrind
        clang-tidy-14 cppcheck
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

# clang-tidy and cppcheck over daemon/ and client/ (tests/lint.sh) come
# first: a finding ends the run before the long test runs.
if ! tests/lint.sh build; then
        echo "===== 0 passed, 1 failed, 0 skipped (lint: 0 passed, 1 failed, 0 skipped) ====="
        exit 1
fi

meson test -C build --print-errorlogs
# A unit test skips (exit 77) only when its prerequisites are missing; CI has them.
if [ -n "${CI:-}" ] && grep -q '"result": "SKIP"' build/meson-logs/testlog.json; then
        echo "run.sh: unit tests were skipped in CI:" >&2
        grep '"result": "SKIP"' build/meson-logs/testlog.json >&2
        exit 1
fi

# Every parser under libFuzzer, 20 s each (tests/fuzz/README.md): a crash
# fails the run.
tests/fuzz/run.sh 20

# The same tests in a second build with AddressSanitizer, LeakSanitizer and
# UBSan: any finding ends the program that made it (a daemon that does not
# exit 0 on SIGTERM fails its test), and every report lands in a directory
# the integration tests check after each test (NSRESD_SANITIZER_LOGS).
results=$(mktemp -d /tmp/nsresd-results-XXXXXX)
trap 'rm -rf "$results"' EXIT
mkdir -m 1777 "$results/sanitizer"
export NSRESD_SANITIZER_LOGS="$results/sanitizer"
sanitized_env=(
        ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:log_path=$NSRESD_SANITIZER_LOGS/asan"
        UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$NSRESD_SANITIZER_LOGS/ubsan"
)
if [ -f build-sanitize/meson-private/coredata.dat ]; then
        meson setup --reconfigure build-sanitize
else
        meson setup build-sanitize -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-sanitize
env "${sanitized_env[@]}" meson test -C build-sanitize --print-errorlogs
if [ -n "${CI:-}" ] && grep -q '"result": "SKIP"' build-sanitize/meson-logs/testlog.json; then
        echo "run.sh: unit tests were skipped in CI (ASan+UBSan build):" >&2
        grep '"result": "SKIP"' build-sanitize/meson-logs/testlog.json >&2
        exit 1
fi

# The distribution's python: pytest, dbus and dbusmock are its packages.
# tests/vm boots Debian's stock kernel in qemu to check the BPF LSM
# restriction, which this host's kernel refuses to load; its guest program
# is static, which the sanitizers cannot be, so it runs with the plain build
# only. test_install's program is compiled without the sanitizers against
# the installed library, and cannot load a sanitized one.
sanitized_status=0
env "${sanitized_env[@]}" NSRESD_BUILD_DIR="$PWD/build-sanitize" \
        /usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$results/sanitized.xml" tests/integration \
        --deselect tests/integration/test_install.py::test_a_program_builds_with_the_installed_libnsres \
        || sanitized_status=$?

plain_status=0
NSRESD_SANITIZER_LOGS= NSRESD_BUILD_DIR="$PWD/build" \
        /usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$results/plain.xml" tests/integration tests/vm \
        || plain_status=$?

# The core paths again with the daemon under valgrind's memcheck
# (tests/valgrind.sh, which runs the whole suite when given no tests): an
# invalid access, a use of uninitialised memory or a definite leak fails its
# test. A bounded subset: memcheck makes every daemon start take seconds.
valgrind_tests=(
        tests/integration/test_allocate.py::test_transient_range_maps_65536_ids_at_zero
        tests/integration/test_allocate.py::test_self_maps_only_the_callers_ids
        tests/integration/test_allocate.py::test_register_accepts_a_self_mapped_namespace
        tests/integration/test_teardown.py::test_every_kind_is_released
        tests/integration/test_restart.py::test_kill_with_live_namespaces_some_exiting_meanwhile
        tests/integration/test_polkit.py::test_denial_releases_every_reservation
        tests/integration/test_errors.py::test_allocate_when_one_map_is_written
        tests/integration/test_limits.py::test_per_owner_limit_frees_up_on_release
        tests/integration/test_limits.py::test_stopped_helper_does_not_stall_the_service
)
valgrind_status=0
NSRESD_SANITIZER_LOGS= NSRESD_VALGRIND_BUILD_DIR="$PWD/build-valgrind" \
        tests/valgrind.sh --junitxml="$results/valgrind.xml" "${valgrind_tests[@]}" || valgrind_status=$?

# 64 concurrent clients for 60 s against the plain build
# (tests/bench/README.md): no error but the limits it provokes, no fd or RSS
# growth in the daemon, nothing left behind. One check in the line below.
soak_status=0
/usr/bin/python3 tests/bench/soak.py --build-dir build --no-rebuild --duration 60 \
        >"$results/soak.json" || soak_status=$?

# One line for every run, last: any run failing fails the command.
/usr/bin/python3 - "$results/sanitized.xml" "$results/plain.xml" "$soak_status" "$results/valgrind.xml" <<'PYTHON'
import sys
import xml.etree.ElementTree as ET

runs = []
for label, path in (('ASan+UBSan build', sys.argv[1]), ('plain build', sys.argv[2]),
                    ('valgrind subset', sys.argv[4])):
    try:
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
        tests, skipped = int(suite.get('tests')), int(suite.get('skipped'))
        failed = int(suite.get('failures')) + int(suite.get('errors'))
    except (OSError, ET.ParseError, AttributeError, TypeError):
        tests, skipped, failed = 0, 0, 1
    runs.append((label, tests - skipped - failed, failed, skipped))
soak_ok = sys.argv[3] == '0'
runs.append(('soak', int(soak_ok), int(not soak_ok), 0))
# The run only gets here when tests/lint.sh passed.
runs.insert(0, ('lint', 1, 0, 0))
total = [sum(r[i] for r in runs) for i in (1, 2, 3)]
detail = '; '.join(f'{label}: {p} passed, {f} failed, {s} skipped' for label, p, f, s in runs)
print(f'===== {total[0]} passed, {total[1]} failed, {total[2]} skipped ({detail}) =====')
PYTHON
[ "$sanitized_status" -eq 0 ] && [ "$plain_status" -eq 0 ] && [ "$soak_status" -eq 0 ] && [ "$valgrind_status" -eq 0 ]
