#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Static analysis of daemon/ and client/ (client/nss too): clang-tidy with
# the checks in .clang-tidy, then cppcheck. Any finding fails the command.
#
#   tests/lint.sh [BUILD_DIR]
#
# BUILD_DIR (default: build) gives the compile commands and the generated
# headers (BPF skeletons); it is configured and built if it is not yet.

set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
jobs=$(nproc)

missing=()
for p in clang-tidy-14 cppcheck; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
                missing+=("$p")
        fi
done
if [ ${#missing[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$build/meson-private/coredata.dat" ]; then
        meson setup "$build"
fi
ninja -C "$build"

# The compile commands of daemon/ and client/ only, one per file: a source
# built twice (the static VM test links daemon/ files) is analysed once.
db=$(mktemp -d /tmp/nsresd-lint-XXXXXX)
trap 'rm -rf "$db"' EXIT
/usr/bin/python3 - "$build/compile_commands.json" "$PWD" "$db/compile_commands.json" <<'PYTHON'
import json
import os
import sys

source, root, target = sys.argv[1:]
seen, kept = set(), []
for entry in json.load(open(source)):
    path = os.path.normpath(os.path.join(entry['directory'], entry['file']))
    rel = os.path.relpath(path, root)
    if rel.split(os.sep)[0] in ('daemon', 'client') and rel not in seen:
        seen.add(rel)
        kept.append(entry)
with open(target, 'w') as f:
    json.dump(kept, f)
with open(target + '.files', 'w') as f:
    for entry in kept:
        print(os.path.normpath(os.path.join(entry['directory'], entry['file'])), file=f)
PYTHON

status=0
start=$SECONDS
echo "lint: clang-tidy on $(wc -l <"$db/compile_commands.json.files") files, $jobs at a time"
xargs -a "$db/compile_commands.json.files" -P "$jobs" -n 1 \
        clang-tidy-14 -p "$db" --quiet --use-color=false >"$db/clang-tidy.log" 2>&1 || status=1
# Only the findings: clang-tidy also prints how many warnings it hid in
# library headers.
grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter' \
        "$db/clang-tidy.log" || true
echo "lint: clang-tidy took $((SECONDS - start)) s"

# cppcheck 2.10 does not know __attribute__((cleanup)): it reports every
# _cleanup_ variable as leaked, its -1/NULL initialiser as redundant and its
# reset as never read. The definition below turns the attribute into
# "static" for cppcheck alone, whose value, like a cleanup variable's, lives
# past every return. LIBBPF_OPTS comes from a library header cppcheck does
# not read. bpf/ headers are the kernel programs' own, written for the BPF
# verifier: they are not part of this check. The tree declares "int r" at
# the top of a function, so variableScope does not apply.
start=$SECONDS
cppcheck --project="$db/compile_commands.json" \
        --enable=warning,style,performance,portability --error-exitcode=1 --inline-suppr \
        --quiet -j "$jobs" \
        '-Dcleanup(f)=)) static __attribute__((' \
        '-DLIBBPF_OPTS(TYPE,NAME,...)=struct TYPE NAME = { .sz = sizeof(struct TYPE), __VA_ARGS__ }' \
        --suppress=missingIncludeSystem \
        --suppress=variableScope \
        --suppress='*:*/bpf/*' \
        --template='{file}:{line}:{column}: {severity} ({id}): {message}' || status=1
echo "lint: cppcheck took $((SECONDS - start)) s"

if [ "$status" -ne 0 ]; then
        echo "lint: FAILED" >&2
else
        echo "lint: clean"
fi
exit "$status"
