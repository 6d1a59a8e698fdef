#!/usr/bin/env bash
# Regenerates build/go.mod and build/go.sum, the wrapper module that builds
# Kubernetes from the Go module proxy (see the comment in build/go.mod):
#   scripts/testenv.d/k8s/gen-build-mod.sh v1.34.4
# Then update K8S_VERSION in ../kubernetes.sh and commit both files.
set -euo pipefail
v=${1:?usage: $0 KUBERNETES_VERSION (e.g. v1.34.4)}
staging=v0.${v#v1.}
dir=$(cd "$(dirname "$0")/build" && pwd)
proxy=$(go env GOPROXY); proxy=${proxy%%,*}
[ -n "$proxy" ] && [ "$proxy" != direct ] && [ "$proxy" != off ] || proxy=https://proxy.golang.org
upstream=$(curl -fsS "$proxy/k8s.io/kubernetes/@v/$v.mod")
{
  cat <<EOT
// Wrapper module for building Kubernetes from the Go module proxy.
//
// k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
// with local ./staging paths, so \`go install k8s.io/kubernetes/cmd/...@v\` fails.
// This module requires k8s.io/kubernetes and points each staging module at its
// published $staging tag instead. Regenerate with scripts/testenv.d/k8s/gen-build-mod.sh.
module github.com/bpm-project/bpm/testenv-k8s-build

go 1.24.0

tool (
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-proxy
	k8s.io/kubernetes/cmd/kube-scheduler
	k8s.io/kubernetes/cmd/kubectl
	k8s.io/kubernetes/cmd/kubelet
)

require k8s.io/kubernetes $v

replace (
EOT
  # Every `k8s.io/x => ./staging/src/k8s.io/x` of upstream's go.mod.
  grep -E '^\s+k8s\.io/[^ ]+ => \./staging/' <<<"$upstream" | awk -v s="$staging" '{print "\t" $1 " => " $1 " " s}' | sort -u
  echo ")"
} >"$dir/go.mod"
rm -f "$dir/go.sum"
(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod go mod tidy)
echo "wrote $dir/go.mod ($(grep -c ' => ' "$dir/go.mod") staging replacements) and go.sum" >&2
