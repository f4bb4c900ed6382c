#!/usr/bin/env bash
# Builds the real components the tests run (etcd, kube-apiserver & co., kubelet, kwok, Kratos,
# Hydra, Mailpit) from the tool modules under hack/tools, each in its own go.mod outside the project's
# graph, generates the prometheus-operator CRDs the monitoring examples are tested against
# (promcrds: a directory of YAMLs, not a binary), copies the Gateway API CRDs the ingress examples
# are tested against out of their module (gatewayapicrds: a directory too), and installs the
# Debian packages the bed needs (nginx among them: the bed's reverse-proxy edge). Binaries are cached by version (and by a
# hash of the tool module and the Go version) outside the clone, so a fresh clone on the same
# machine pays nothing: the warm path is a few stat calls.
#
# The developer tools (golangci-lint, for `make vet`) are built the same way but only when named:
# they are not in ALL_TOOLS, and naming only them skips the Debian packages.
#
#   hack/tools.sh [tool...]   build what is missing; print the bin dir on stdout
#   hack/tools.sh --check     exit 1 if anything is missing (no build)
#
# Cache: $KRATOS_INJECTOR_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/kratos-injector).
# The stable bin dir ($CACHE/bin) holds symlinks to the versioned binaries.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KRATOS_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kratos-injector}
BIN=$CACHE/bin
export GOWORK=off GOFLAGS=${GOFLAGS:-}
mkdir -p "$BIN" "$CACHE/tools"

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
KWOK_VERSION=v0.8.0
KRATOS_VERSION=v1.3.1
MAILPIT_VERSION=v1.33.1
HYDRA_VERSION=v2.3.0
# The API module the CRDs are generated from (pinned, with controller-tools, in hack/tools/promcrds).
PROMETHEUS_OPERATOR_VERSION=v0.95.2
# The Gateway API release whose standard-channel CRDs are copied (pinned in hack/tools/gatewayapicrds).
GATEWAY_API_VERSION=v1.6.3
GOLANGCI_LINT_VERSION=v2.15.0
KREW_VERSION=v0.4.3
ALL_TOOLS="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kwok kratos hydra mailpit mkimg pause smokewebhook promcrds gatewayapicrds"
DEV_TOOLS="golangci-lint validate-krew-manifest"

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# module_dir tool -> tool module directory
module_dir() {
  case $1 in
    etcd) echo etcd ;;
    mkimg|pause|smokewebhook) echo images ;;
    kube-*|kubelet|kubectl) echo kube ;;
    validate-krew-manifest) echo krew ;;
    *) echo "$1" ;;
  esac
}
version_of() {
  case $1 in
    etcd) echo $ETCD_VERSION ;;
    kube-*|kubelet|kubectl) echo $K8S_VERSION ;;
    kwok) echo $KWOK_VERSION ;;
    kratos) echo $KRATOS_VERSION ;;
    hydra) echo $HYDRA_VERSION ;;
    mailpit) echo $MAILPIT_VERSION ;;
    promcrds) echo $PROMETHEUS_OPERATOR_VERSION ;;
    gatewayapicrds) echo $GATEWAY_API_VERSION ;;
    golangci-lint) echo $GOLANGCI_LINT_VERSION ;;
    validate-krew-manifest) echo $KREW_VERSION ;;
    mkimg|pause|smokewebhook) echo local ;;
  esac
}
# key tool -> cache key: version + hash of the tool module + Go version
key_of() {
  local d=$HERE/tools/$(module_dir "$1")
  local h
  # our own tool sources (images module, promcrds with its generator options) are part of the key
  h=$(cat "$d/go.mod" "$d/go.sum" <(go env GOVERSION) $(find "$d" -name '*.go' | sort) | sha256sum | cut -c1-12)
  echo "$(version_of "$1")-$h"
}

build_one() {
  local t=$1 d out k
  d=$HERE/tools/$(module_dir "$t")
  k=$(key_of "$t")
  out=$CACHE/tools/$t/$k/$t
  if [[ -x $out ]]; then
    ln -sfn "$out" "$BIN/$t"
    return 0
  fi
  [[ ${CHECK_ONLY:-} == 1 ]] && { log "missing: $t"; return 1; }
  mkdir -p "$(dirname "$out")"
  local start=$SECONDS
  log "building $t $(version_of "$t") (first run only; cached in $CACHE afterwards)"
  local pkgv=k8s.io/component-base/version minor
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  (
    cd "$d"
    case $t in
      etcd)
        CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" go.etcd.io/etcd/server/v3 ;;
      kube-*|kubelet|kubectl)
        CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X $pkgv.gitVersion=$K8S_VERSION -X $pkgv.gitMajor=1 -X $pkgv.gitMinor=$minor -X $pkgv.gitTreeState=clean -X $pkgv.buildDate=1970-01-01T00:00:00Z" \
          -o "$out.tmp" "k8s.io/kubernetes/cmd/$t" ;;
      kwok)
        CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" sigs.k8s.io/kwok/cmd/kwok ;;
      mkimg)
        CGO_ENABLED=0 go build -trimpath -o "$out.tmp" ./mkimg ;;
      pause|smokewebhook)
        CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" "./$t" ;;
      mailpit)
        CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" github.com/axllent/mailpit ;;
      golangci-lint)
        # main.date set: the binary reports the pinned version instead of this module's "(devel)".
        CGO_ENABLED=0 go build -trimpath \
          -ldflags "-s -w -X main.version=${GOLANGCI_LINT_VERSION#v} -X main.date=1970-01-01T00:00:00Z" \
          -o "$out.tmp" github.com/golangci/golangci-lint/v2/cmd/golangci-lint ;;
      promcrds)
        # A directory of CRD YAMLs (monitoring.coreos.com_<plural>.yaml), generated by
        # controller-tools from the operator's API module; see hack/tools/promcrds/main.go.
        rm -rf "$out.tmp"
        go run . -out "$out.tmp" ;;
      gatewayapicrds)
        # A directory of the release's standard-channel CRD YAMLs
        # (gateway.networking.k8s.io_<plural>.yaml), as the module zip ships them: go.mod pins
        # the version, go.sum its hash; `go mod download -json` prints where the module is.
        local dir
        dir=$(go mod download -json sigs.k8s.io/gateway-api | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
        [[ -d $dir/config/crd/standard ]] || { echo "gateway-api module has no config/crd/standard (Dir: '$dir')" >&2; exit 1; }
        rm -rf "$out.tmp"; mkdir -p "$out.tmp"
        cp "$dir"/config/crd/standard/*.yaml "$out.tmp/"
        chmod -R u+w "$out.tmp" ;;
      validate-krew-manifest)
        # krew's own manifest validator (what krew-index's CI runs), for `make release`.
        CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" sigs.k8s.io/krew/cmd/validate-krew-manifest ;;
      kratos)
        # cgo (sqlite); -mod=mod because the module starts from Kratos's own go.sum and is never tidied.
        CGO_ENABLED=1 go build -mod=mod -trimpath -tags sqlite \
          -ldflags "-s -w -X github.com/ory/kratos/driver/config.Version=$KRATOS_VERSION" \
          -o "$out.tmp" github.com/ory/kratos ;;
      hydra)
        # Ory Hydra, the OAuth2/OIDC provider of the Hydra integration's e2e; built as Kratos is.
        CGO_ENABLED=1 go build -mod=mod -trimpath -tags sqlite,sqlite_omit_load_extension \
          -ldflags "-s -w -X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION" \
          -o "$out.tmp" github.com/ory/hydra/v2 ;;
      *) echo "unknown tool $t" >&2; exit 2 ;;
    esac
  )
  mv "$out.tmp" "$out"
  ln -sfn "$out" "$BIN/$t"
  log "built $t in $((SECONDS - start))s"
}

# kwok's CRDs and stages come from its module, copied next to the binary.
kwok_assets() {
  local dst=$CACHE/kwok-assets/$KWOK_VERSION dir
  [[ -f $dst/.done ]] && return 0
  [[ ${CHECK_ONLY:-} == 1 ]] && { log "missing: kwok assets"; return 1; }
  dir=$(cd "$HERE/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  rm -rf "$dst"; mkdir -p "$dst/crd" "$dst/stage"
  cp "$dir"/kustomize/crd/bases/*.yaml "$dst/crd/"
  local f
  for f in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/pod/fast/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] || cp "$f" "$dst/stage/"
  done
  chmod -R u+w "$dst"
  touch "$dst/.done"
  ln -sfn "$dst" "$BIN/kwok-assets"
}

# Debian packages the bed needs: PostgreSQL (server), and for the real node containerd, runc, CNI
# plugins, iptables, conntrack; busybox-static for the app image; nginx, the reverse-proxy edge in
# front of the real node's pods (the data plane ingress-nginx runs; internal/testbed/edge.go).
apt_packages() {
  local missing=()
  [[ -n $(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null) ]] || missing+=(postgresql)
  command -v containerd >/dev/null || missing+=(containerd)
  [[ -x /usr/sbin/runc ]] || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  [[ -x /bin/busybox ]] || missing+=(busybox-static)
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  ((${#missing[@]} == 0)) && return 0
  [[ ${CHECK_ONLY:-} == 1 ]] && { log "missing Debian packages: ${missing[*]}"; return 1; }
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then echo "need root to apt-get install ${missing[*]}" >&2; return 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # Debian's nginx package starts a system nginx on 0.0.0.0:80 from its postinst; the bed listens
  # on 127.0.0.1 only and runs its own instance. A policy-rc.d that says "no" (exit 101) keeps
  # every package's service from starting during the install; it is ours only when none was there.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# kratos-injector hack/tools.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"; own_policy=1
  fi
  local st=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || st=$?
  ((own_policy == 0)) || rm -f "$policy"
  ((st == 0)) || return $st
  # Debian's containerd (and nginx, had a service started anyway) may run a system daemon; the bed runs its own.
  local svc
  for svc in containerd nginx; do
    if command -v systemctl >/dev/null && systemctl is-active -q $svc 2>/dev/null; then
      systemctl stop $svc >&2 || true; systemctl disable $svc >&2 || true
    fi
  done
}

tools=()
for a in "$@"; do
  case $a in
    --check) CHECK_ONLY=1 ;;
    *) tools+=("$a") ;;
  esac
done
((${#tools[@]})) || read -r -a tools <<<"$ALL_TOOLS"

# The Debian packages are for the test components: skip them when only developer tools are named.
need_apt=0
for t in "${tools[@]}"; do [[ " $DEV_TOOLS " == *" $t "* ]] || need_apt=1; done

rc=0
((need_apt == 0)) || apt_packages || rc=1
for t in "${tools[@]}"; do build_one "$t" || rc=1; done
[[ " ${tools[*]} " == *" kwok "* ]] && { kwok_assets || rc=1; }
((rc == 0)) || exit $rc
echo "$BIN"
