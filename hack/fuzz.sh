#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s): `make test` runs them
# briefly, `make fuzz` long (FUZZTIME=5m). Targets are discovered with `go test -list`, so a new
# Fuzz function is fuzzed without touching this script. New crashers land in the package's
# testdata/fuzz/ and then run as regression cases in every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
n=0
for pkg in $(go list ./... | grep -v /test/e2e); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "[fuzz $(date +%H:%M:%S)] $pkg $target for $fuzztime"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg"
    n=$((n + 1))
  done
done
echo "[fuzz] $n targets fuzzed for $fuzztime each"
((n > 0)) || { echo "[fuzz] no fuzz target found: something is wrong with discovery" >&2; exit 1; }
