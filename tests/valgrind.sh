#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The integration tests with every daemon under valgrind's memcheck: an
# invalid access, a use of uninitialised memory or a definite leak makes the
# daemon exit 99 on SIGTERM, which fails its test. Too slow for every run of
# tests/run.sh; run it as root after changes to daemon/:
#
#     tests/valgrind.sh                          # the whole integration suite
#     tests/valgrind.sh tests/integration/test_allocate.py -k transient
#
# Arguments go to pytest (default: tests/integration). The build goes to
# build-valgrind, or to $NSRESD_VALGRIND_BUILD_DIR. Tests that start the
# daemon behind a prefix of their own (strace, setpriv, unshare) run it
# without valgrind; tests that time the daemon (teardown within a second,
# 300 parallel calls) may fail from the slowdown alone: read the daemon's
# log attached to a failure for valgrind's own report ('==PID==' lines).

set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends valgrind
fi

# A build of its own: valgrind wants no sanitizers, and without
# optimisation its reports name the true lines.
build=$(realpath -m "${NSRESD_VALGRIND_BUILD_DIR:-build-valgrind}")
if [ -f "$build/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$build"
else
        meson setup "$build" -Dbuildtype=debug
fi
ninja -C "$build"

[ $# -gt 0 ] || set -- tests/integration
export NSRESD_BUILD_DIR="$build" NSRESD_VALGRIND=1
exec /usr/bin/python3 -m pytest -v -p no:cacheprovider "$@"
