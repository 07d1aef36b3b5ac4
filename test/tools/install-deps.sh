#!/usr/bin/env bash
# install-deps.sh: build the real binaries the end-to-end tests drive into a cache outside the
# repository (default /var/cache/sandbox-guard-e2e, override with SG_CACHE). Idempotent: every
# component is built once per pinned version. Prints shell exports for the test environment,
# always including CRICTL: the one given in the environment if set, else the real crictl built
# here with ../shared/tools/build-crictl (offline) or, without ../shared, from the Go module proxy.
#
#   eval "$(test/tools/install-deps.sh)"
#   eval "$(test/tools/install-deps.sh --env)"   # only what is built already; builds nothing
set -euo pipefail

CACHE=${SG_CACHE:-/var/cache/sandbox-guard-e2e}
CONTAINERD2=${CONTAINERD2_VERSION:-v2.2.9}
# containerd 2.3 (LTS) and 2.4 write config version 4: the config reader is tested against both.
CONTAINERD23=${CONTAINERD23_VERSION:-v2.3.7}
CONTAINERD24=${CONTAINERD24_VERSION:-v2.4.2}
CONTAINERD17=${CONTAINERD17_VERSION:-v1.7.35}
RUNC=${RUNC_VERSION:-v1.3.6}
CNI=${CNI_VERSION:-v1.9.1}
REGISTRY=${REGISTRY_VERSION:-v3.1.2}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0} # only where ../shared/tools/build-crictl is missing
# A Kubernetes node for the kubelet tests: kubelet, API server, controllers, kubectl, etcd.
KUBE=${KUBE_VERSION:-v1.37.2}
ETCD=${ETCD_VERSION:-v3.6.16}
here=$(cd "$(dirname "$0")" && pwd)
shared=${SG_SHARED:-$(cd "$here/../../.." && pwd)/shared}

log() { echo "install-deps: $*" >&2; }

# --env serves `make unit`, whose differential test of the containerd config reader runs the
# containerd binaries, and deploy/verify's Helm install test etcd and kube-apiserver: export those
# already in the cache, never build (a missing one is skipped).
if [ "${1:-}" = --env ]; then
  for pair in SG_CONTAINERD17:$CONTAINERD17 SG_CONTAINERD2:$CONTAINERD2 SG_CONTAINERD23:$CONTAINERD23 SG_CONTAINERD24:$CONTAINERD24; do
    dir=$CACHE/containerd-${pair#*:}/bin
    if [ -x "$dir/containerd" ]; then echo "export ${pair%%:*}=$dir"; fi
  done
  if [ -x "$CACHE/kubernetes-$KUBE/bin/kube-apiserver" ]; then echo "export SG_KUBE_BIN=$CACHE/kubernetes-$KUBE/bin"; fi
  if [ -x "$CACHE/etcd-$ETCD/bin/etcd" ]; then echo "export SG_ETCD=$CACHE/etcd-$ETCD/bin/etcd"; fi
  exit 0
fi
if [ -n "${CRICTL:-}" ] && [ ! -x "$CRICTL" ]; then
  log "CRICTL=$CRICTL is not an executable file (unset CRICTL to build the real crictl into $CACHE)"
  exit 1
fi
mkdir -p "$CACHE"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

apt_missing=()
command -v iptables-nft >/dev/null 2>&1 || apt_missing+=(iptables)
command -v ip >/dev/null 2>&1 || apt_missing+=(iproute2)
command -v gcc >/dev/null 2>&1 || apt_missing+=(gcc libc6-dev)
# kubelet gives every sandbox a seccomp profile: runc must be built with libseccomp.
[ -e /usr/include/seccomp.h ] || apt_missing+=(libseccomp-dev)
command -v pkg-config >/dev/null 2>&1 || apt_missing+=(pkg-config)
if [ ${#apt_missing[@]} -gt 0 ]; then
  log "apt-get install ${apt_missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}") >&2
fi

build_containerd2() { # version (a 2.x release)
  local ver=$1 dir=$CACHE/containerd-$1 start=$SECONDS
  [ -x "$dir/bin/containerd" ] && return
  log "building containerd $ver"
  mkdir -p "$dir/bin.tmp"
  CGO_ENABLED=0 GOBIN=$dir/bin.tmp go install "github.com/containerd/containerd/v2/cmd/containerd@$ver" \
    "github.com/containerd/containerd/v2/cmd/ctr@$ver" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$ver" >&2
  rm -rf "$dir/bin"; mv "$dir/bin.tmp" "$dir/bin"
  log "built containerd $ver in $((SECONDS - start))s"
}

build_containerd17() {
  local dir=$CACHE/containerd-$CONTAINERD17
  [ -x "$dir/bin/containerd" ] && return
  log "building containerd $CONTAINERD17"
  local src tmp
  src=$(cd "$CACHE" && go mod download -json "github.com/containerd/containerd@$CONTAINERD17" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  tmp=$(mktemp -d "$CACHE/src.XXXXXX")
  cp -r "$src/." "$tmp/"; chmod -R u+w "$tmp"
  mkdir -p "$dir/bin.tmp"
  (cd "$tmp" && CGO_ENABLED=0 go build -mod=mod -trimpath -o "$dir/bin.tmp/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2) >&2
  rm -rf "$tmp" "$dir/bin"; mv "$dir/bin.tmp" "$dir/bin"
}

build_go() { # name version cgo pkg...
  local name=$1 ver=$2 cgo=$3; shift 3
  local dir=$CACHE/$name-$ver
  [ -d "$dir/bin" ] && return
  log "building $name $ver"
  mkdir -p "$dir/bin.tmp"
  local p args=()
  for p in "$@"; do args+=("$p@$ver"); done
  CGO_ENABLED=$cgo GOBIN=$dir/bin.tmp go install "${args[@]}" >&2
  rm -rf "$dir/bin"; mv "$dir/bin.tmp" "$dir/bin"
}

# build_module name version module pkg... builds main packages of a module whose go.mod replaces
# its own modules with local directories (k8s.io/kubernetes, etcd), where `go install` is refused:
# a throwaway module requires it and, for kubernetes, maps each staging module to its release.
build_module() {
  local name=$1 ver=$2 mod=$3; shift 3
  local dir=$CACHE/$name-$ver start=$SECONDS
  [ -d "$dir/bin" ] && return
  # Two runs at once (two checkouts, make demo beside make test) wait for one build.
  local lock; exec {lock}>"$CACHE/$name-$ver.lock"; flock "$lock"
  if [ -d "$dir/bin" ]; then exec {lock}>&-; return; fi
  log "building $name $ver (several minutes on 2 cores)"
  local src; src=$(mktemp -d "$CACHE/src.XXXXXX")
  (
    cd "$src"
    printf 'module build\ngo 1.26.0\nrequire %s %s\n' "$mod" "$ver" >go.mod
    if [ "$mod" = k8s.io/kubernetes ]; then
      local moddir; moddir=$(go mod download -json "$mod@$ver" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
      local staging=v0.${ver#v1.}
      { echo 'replace ('; sed -n 's|^\t\(k8s.io/[^ ]*\) => ./staging/.*|\t\1 => \1 '"$staging"'|p' "$moddir/go.mod"; echo ')'; } >>go.mod
    fi
    printf 'package build\n\nimport (\n' >tools.go
    local p; for p in "$@"; do printf '\t_ "%s"\n' "$p" >>tools.go; done
    echo ')' >>tools.go
    # tools.go imports main packages only to let `go mod tidy` see them; it is never compiled.
    sed -i '1i //go:build tools\n' tools.go
    go mod tidy >&2
    mkdir -p "$dir/bin.tmp"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $LDFLAGS" -o "$dir/bin.tmp/" "$@" >&2
    # go names the binary of go.etcd.io/etcd/server/v3 "server"
    if [ "$name" = etcd ]; then mv "$dir/bin.tmp/server" "$dir/bin.tmp/etcd"; fi
  )
  rm -rf "$src" "$dir/bin"; mv "$dir/bin.tmp" "$dir/bin"
  exec {lock}>&-
  log "built $name $ver in $((SECONDS - start))s"
}

build_kube() {
  local v=${KUBE#v} cv=k8s.io/component-base/version
  LDFLAGS="-X $cv.gitVersion=$KUBE -X $cv.gitMajor=${v%%.*} -X $cv.gitMinor=$(echo "$v" | cut -d. -f2) -X $cv.gitTreeState=clean" \
    build_module kubernetes "$KUBE" k8s.io/kubernetes k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

if [ "${1:-}" = --kube-only ]; then
  build_kube
  LDFLAGS="" build_module etcd "$ETCD" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
  exit 0
fi

# Builds are independent; run them two at a time (2-core machines).
build_containerd2 "$CONTAINERD2" & p1=$!
GOFLAGS="$GOFLAGS -tags=seccomp" build_go runc-seccomp "$RUNC" 1 github.com/opencontainers/runc & p2=$!
wait $p2
build_go cni "$CNI" 0 github.com/containernetworking/plugins/plugins/main/bridge \
  github.com/containernetworking/plugins/plugins/main/loopback \
  github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/meta/portmap
build_go registry "$REGISTRY" 0 github.com/distribution/distribution/v3/cmd/registry
wait $p1
{ build_containerd2 "$CONTAINERD23" && build_containerd2 "$CONTAINERD24"; } & p3=$!
build_containerd17
wait $p3
# Kubernetes (kubelet, API server, controllers, kubectl) and etcd for the kubelet tests: the
# longest build (about 10 minutes alone on 2 cores), once per version.
build_kube
LDFLAGS="" build_module etcd "$ETCD" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3

# The tests drive every node with the real crictl.
if [ -n "${CRICTL:-}" ]; then
  crictl=$(readlink -f "$CRICTL")
elif [ -x "$shared/tools/build-crictl" ]; then
  crictl=$("$shared/tools/build-crictl" "$CACHE/crictl" | tail -1)
else
  log "no $shared/tools/build-crictl: crictl $CRICTL_VERSION from the Go module proxy"
  GOFLAGS="$GOFLAGS -ldflags=-X=sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    build_go crictl "$CRICTL_VERSION" 0 sigs.k8s.io/cri-tools/cmd/crictl
  crictl=$CACHE/crictl-$CRICTL_VERSION/bin/crictl
fi

cat <<OUT
export SG_CONTAINERD2=$CACHE/containerd-$CONTAINERD2/bin
export SG_CONTAINERD23=$CACHE/containerd-$CONTAINERD23/bin
export SG_CONTAINERD24=$CACHE/containerd-$CONTAINERD24/bin
export SG_CONTAINERD17=$CACHE/containerd-$CONTAINERD17/bin
export SG_RUNC=$CACHE/runc-seccomp-$RUNC/bin/runc
export SG_CNI_BIN=$CACHE/cni-$CNI/bin
export SG_REGISTRY=$CACHE/registry-$REGISTRY/bin/registry
export CRICTL=$crictl
export SG_KUBE_BIN=$CACHE/kubernetes-$KUBE/bin
export SG_ETCD=$CACHE/etcd-$ETCD/bin/etcd
OUT
