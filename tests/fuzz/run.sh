#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Builds the libFuzzer harnesses with clang, ASan and UBSan, and runs them.
#
#   tests/fuzz/run.sh [SECONDS]      fuzz each harness for SECONDS (default 20)
#   tests/fuzz/run.sh --regressions  run every seed and every regression input once
#
# The build directory is build-fuzz at the top of the tree (NSRESD_FUZZ_BUILD_DIR
# overrides it). Inputs the fuzzer finds interesting go to a scratch corpus
# there, never into the tree. A crash, a leak or a failed check stops the run
# with a non-zero status and names the file that holds the input.

set -euo pipefail
cd "$(dirname "$0")/../.."

fuzz_dir=tests/fuzz
build=${NSRESD_FUZZ_BUILD_DIR:-$PWD/build-fuzz}
harnesses=(names registry config subid map nss-index)

mode=fuzz
seconds=20
case "${1:-}" in
"") ;;
--regressions) mode=regressions ;;
*[!0-9]* | 0)
        echo "usage: $0 [SECONDS | --regressions]" >&2
        exit 2
        ;;
*) seconds=$1 ;;
esac

if [ ! -f "$build/meson-private/coredata.dat" ]; then
        CC=clang-14 meson setup "$build" -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
                -Dman=disabled
fi
ninja -C "$build" fuzzers

# UBSan only reports by default; a fuzzer must stop at the first finding.
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1

for h in "${harnesses[@]}"; do
        exe="$build/tests/fuzz/fuzz-$h"
        inputs=("$fuzz_dir/corpus/$h")
        if [ -d "$fuzz_dir/regressions/$h" ]; then
                inputs+=("$fuzz_dir/regressions/$h")
        fi

        if [ "$mode" = regressions ]; then
                echo "== fuzz-$h: ${inputs[*]}"
                "$exe" -runs=0 "${inputs[@]}"
                continue
        fi

        # New inputs go to the first directory: a scratch one, kept between
        # runs in the build directory so that later runs start further along.
        scratch="$build/fuzz-corpus/$h"
        artifacts="$build/fuzz-artifacts/$h/"
        mkdir -p "$scratch" "$artifacts"
        options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
                 -artifact_prefix="$artifacts")
        if [ -f "$fuzz_dir/$h.dict" ]; then
                options+=(-dict="$fuzz_dir/$h.dict")
        fi
        echo "== fuzz-$h: ${seconds}s"
        if ! "$exe" "${options[@]}" "$scratch" "${inputs[@]}"; then
                echo "run.sh: fuzz-$h failed; the input is in $artifacts (tests/fuzz/README.md:" \
                        "adding a regression)" >&2
                exit 1
        fi
done
