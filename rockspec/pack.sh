#!/usr/bin/env bash
# `make rock`: writes DIST (default dist/) with the source rock of this
# checkout (HEAD's files plus uncommitted changes, nothing ignored) and a
# LuaRocks manifest, so that on a machine with no checkout and no network
#   luarocks --lua-version=5.1 install --only-server=/path/to/dist bptt
# builds and installs bptt as it would from a rocks server.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dist=$(realpath -m "${1:-$top/dist}")
name=bptt-scm-1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/bptt"
cd "$top"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  { git ls-files -z; git ls-files -z --others --exclude-standard; } |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 -r cp --parents -t "$work/bptt"
else
  tar --exclude=./build --exclude=./dist --exclude=./.git -cf - . | tar -C "$work/bptt" -xf -
fi
tar -C "$work" -czf "$work/$name.tar.gz" bptt
cp rockspec/$name.rockspec "$work/"
mkdir -p "$dist"
rm -f "$dist/$name.src.rock"
(cd "$work" && zip -q -X "$dist/$name.src.rock" "$name.rockspec" "$name.tar.gz")
luarocks-admin --lua-version=5.1 make_manifest "$dist" >/dev/null
echo "make rock: $dist/$name.src.rock and its manifest; install with"
echo "  luarocks --lua-version=5.1 install --only-server=$dist bptt"
