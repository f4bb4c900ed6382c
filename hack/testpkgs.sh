#!/usr/bin/env bash
# Lists the project's test packages by what their tests need, so `make unit` and
# `make integration` say truthfully which tests start real components:
#
#   hack/testpkgs.sh unit         packages whose tests need nothing but Go (no test bed)
#   hack/testpkgs.sh integration  packages whose tests start real components: they import
#                                 internal/testbed (kube-apiserver, etcd, kwok, Kratos, ...)
#
# test/e2e is in neither: `make e2e` runs it. The split is computed from the test imports, so a
# package that starts using the bed moves by itself. hack/release is integration too: its test
# runs the release, cross-compiling 8 binaries (minutes on a cold build cache).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
bed=$(go list -test -f '{{if .ForTest}}{{.ForTest}}{{range .Deps}} {{.}}{{end}}{{end}}' ./... |
  awk -v bed="$mod/internal/testbed" '{for (i = 2; i <= NF; i++) if ($i == bed) { print $1; break }}'
  echo "$mod/hack/release")
bed=$(sort -u <<<"$bed")
case ${1:-} in
  integration) comm -12 <(go list ./... | grep -v "^$mod/test/e2e" | sort) <(echo "$bed") ;;
  unit) comm -23 <(go list ./... | grep -v "^$mod/test/e2e" | grep -v "^$mod/internal/testbed$" | sort) <(echo "$bed") ;;
  *) echo "usage: $0 unit|integration" >&2; exit 2 ;;
esac
