# shellcheck shell=bash
# Kubernetes component of scripts/testenv: a real single-node cluster.
# Sourced by scripts/testenv after common.sh; see ../../../shared/TESTENV.md
# (Kubernetes section) for why each setting below is what it is.

# Bump together with k8s/build/go.mod (k8s/gen-build-mod.sh VERSION) and
# K8S_BUILD_DATE (the version's date on the module proxy, /@v/VERSION.info).
K8S_VERSION=v1.34.4
K8S_BUILD_DATE=2026-02-10T12:53:36Z
K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8s
K8S_CACHE=$BPM_TESTENV_DIR/cache/kubernetes-$K8S_VERSION
K8S_BIN=$K8S_CACHE/bin
K8S_RUN=$BPM_TESTENV_DIR/run/kubernetes
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# ---------------------------------------------------------------- build ----

# Builds the six binaries from the module proxy into the version-keyed cache.
# A complete cache (stamp file written last) is reused as is, so a warm `up`
# never rebuilds; a lock keeps two concurrent CI jobs from building twice.
k8s_build() {
  [ -f "$K8S_BIN/.complete" ] && return 0
  mkdir -p "$K8S_CACHE"
  exec {k8s_lock}>"$K8S_CACHE/.build.lock"
  flock "$k8s_lock"
  if [ -f "$K8S_BIN/.complete" ]; then exec {k8s_lock}>&-; return 0; fi
  command -v go >/dev/null || die "go is required to build Kubernetes"
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  # Without these the binaries report v0.0.0-master and kubectl warns about skew.
  local x="" v minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for v in "$pkg" "$cgo"; do
    x+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
    x+=" -X $v.gitTreeState=clean -X $v.buildDate=$K8S_BUILD_DATE"
  done
  local tmp=$K8S_CACHE/bin.tmp pkgs=() b
  rm -rf "$tmp"; mkdir -p "$tmp"
  for b in "${K8S_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  log "kubernetes: building $K8S_VERSION (${K8S_BINARIES[*]}); ~10 min cold on 2 cores"
  local t0=$SECONDS
  # One `go build` for all six shares compilation of the common packages.
  # -mod=readonly: the checked-in go.sum is the source of truth (reproducible).
  (cd "$K8S_DIR/build" &&
    GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
      go build -trimpath -ldflags "-s -w$x" -o "$tmp/" "${pkgs[@]}") >&2 ||
    { exec {k8s_lock}>&-; die "kubernetes: build failed"; }
  rm -rf "$K8S_BIN"; mv "$tmp" "$K8S_BIN"
  touch "$K8S_BIN/.complete"
  log "kubernetes: built in $((SECONDS - t0)) s"
  exec {k8s_lock}>&-
}

# --------------------------------------------------------------- layout ----

# One bridge of our own carries the node address (non-loopback, because the
# apiserver refuses to advertise 127.0.0.1 for the `kubernetes` Service) and is
# also the CNI bridge, so its address is the pods' gateway: the hub listens
# there. It is created up front so the hub can bind it before any pod exists.
K8S_BRIDGE=${BPMTE_PREFIX:-bpmte}-k8s0                # prefix: verify-clean finds leftovers by name
K8S_POD_CIDR=${BPM_TEST_K8S_POD_CIDR:-10.213.0.0/24}
K8S_NODE_IP=${BPM_TEST_K8S_NODE_IP:-10.213.0.1}
K8S_SVC_CIDR=${BPM_TEST_K8S_SVC_CIDR:-10.213.1.0/24}
K8S_SVC_IP=${BPM_TEST_K8S_SVC_IP:-10.213.1.1}     # first Service IP: `kubernetes`
K8S_API_PORT=${BPM_TEST_K8S_API_PORT:-6443}
K8S_ETCD_PORT=${BPM_TEST_K8S_ETCD_PORT:-12379}   # not 2379: keep clear of any other etcd
K8S_NODE_NAME=bpm-test-node
K8S_CNI_NAME=bpm-k8s                              # prefix of our /var/lib/cni/results entries
K8S_CGROUP_ROOT=bpm-k8s                           # kubelet cgroupRoot: our pods' cgroups live under it
K8S_PAUSE_IMAGE=localhost/bpm-testenv/pause:v1
K8S_TEST_IMAGE=localhost/bpm-testenv/k8s-probe:v1
K8S_CTRD_SOCK=$K8S_RUN/containerd/containerd.sock

# Host settings the cluster changes (kubelet sets the kernel/vm ones unless
# protectKernelDefaults; the CNI bridge plugin turns on forwarding). Saved on
# the way up, restored on the way down.
K8S_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.ipv4.ip_forward)

k8s_ctr() { ctr -a "$K8S_CTRD_SOCK" -n k8s.io "$@"; }
# kubectl keeps a discovery/HTTP cache, by default in ~/.kube/cache: keep ours
# in the run dir (KUBECACHEDIR), here and in the wrapper tests get.
k8s_kubectl() { KUBECACHEDIR=$K8S_RUN/kube-cache "$K8S_BIN/kubectl" --kubeconfig "$K8S_RUN/pki/admin.kubeconfig" --request-timeout=10s "$@"; }
k8s_curl_api() {
  curl -fsS --max-time 5 --cacert "$K8S_RUN/pki/ca.crt" --cert "$K8S_RUN/pki/admin.crt" \
    --key "$K8S_RUN/pki/admin.key" "https://$K8S_NODE_IP:$K8S_API_PORT$1"
}

# --------------------------------------------------------------- images ----

# Builds the pause and test images (static Go, FROM scratch) as archives that
# `ctr images import` takes; keyed by the sources and the Go version.
k8s_build_images() {
  local src=$K8S_DIR/images key out
  key=$( (cd "$src" && find . -type f -name '*.go' -o -name go.mod | sort | xargs cat; go version) | sha256sum | cut -c1-16)
  out=$K8S_CACHE/images/$key
  K8S_IMAGE_DIR=$out
  [ -f "$out/.complete" ] && return 0
  log "kubernetes: building pause and test images"
  rm -rf "$out"; mkdir -p "$out"
  (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/" ./mkimage ./pause ./probe) >&2
  "$out/mkimage" -o "$out/pause.tar" -ref "$K8S_PAUSE_IMAGE" -entrypoint /pause -user 65535 "$out/pause=/pause"
  "$out/mkimage" -o "$out/probe.tar" -ref "$K8S_TEST_IMAGE" -entrypoint /probe -user 65534 "$out/probe=/probe"
  touch "$out/.complete"
}

# ------------------------------------------------------------------ pki ----

# k8s_cert NAME SUBJECT EXT-USAGE [SANS]: an ECDSA key and a CA-signed cert.
k8s_cert() {
  local d=$K8S_RUN/pki name=$1 subj=$2 usage=$3 sans=${4:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$d/$name.ext"
  openssl req -new -key "$d/$name.key" -subj "$subj" 2>/dev/null |
    openssl x509 -req -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
      -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.ext"
}

# k8s_user_yaml USER (cert|token): one kubeconfig `users` entry.
k8s_user_yaml() {
  local d=$K8S_RUN/pki
  if [ "$2" = token ]; then
    printf -- '- name: %s\n  user:\n    token: %s\n' "$1" "$(cat "$d/$1.token")"
  else
    printf -- '- name: %s\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\n' \
      "$1" "$(base64 -w0 <"$d/$1.crt")" "$(base64 -w0 <"$d/$1.key")"
  fi
}
# k8s_kubeconfig FILE CONTEXT NAMESPACE USER (cert|token) [CONTEXT NAMESPACE USER (cert|token)]...
# Writes a self-contained kubeconfig (data embedded) so tests may copy it;
# the first context is the current one. An empty NAMESPACE means none.
k8s_kubeconfig() {
  local file=$1; shift
  {
    cat <<EOT
apiVersion: v1
kind: Config
clusters:
- name: bpm-test
  cluster:
    server: https://$K8S_NODE_IP:$K8S_API_PORT
    certificate-authority-data: $(base64 -w0 <"$K8S_RUN/pki/ca.crt")
EOT
    local args=("$@") i users="" contexts=""
    for ((i = 0; i < ${#args[@]}; i += 4)); do
      users+=$(k8s_user_yaml "${args[i + 2]}" "${args[i + 3]}")$'\n'
      contexts+="- name: ${args[i]}"$'\n'"  context:"$'\n'"    cluster: bpm-test"$'\n'
      contexts+="    user: ${args[i + 2]}"$'\n'
      [ -z "${args[i + 1]}" ] || contexts+="    namespace: ${args[i + 1]}"$'\n'
    done
    printf 'users:\n%scontexts:\n%scurrent-context: %s\n' "$users" "$contexts" "${args[0]}"
  } >"$file"
  chmod 600 "$file"
}

k8s_pki() {
  local d=$K8S_RUN/pki
  mkdir -p "$d"; chmod 700 "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=bpm-testenv-kubernetes-ca" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$d/ca.crt" 2>/dev/null
  k8s_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$K8S_NODE_IP,IP:$K8S_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  k8s_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  k8s_cert admin "/O=system:masters/CN=bpm-testenv-admin" clientAuth
  k8s_cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  k8s_cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  k8s_cert kubelet "/O=system:nodes/CN=system:node:$K8S_NODE_NAME" clientAuth
  k8s_cert kubelet-serving "/CN=$K8S_NODE_NAME" serverAuth "IP:$K8S_NODE_IP,DNS:$K8S_NODE_NAME"
  k8s_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  # Two test users authenticated two different ways: a client certificate
  # (bpm-test-a) and a static bearer token (bpm-test-b).
  k8s_cert bpm-test-a "/O=bpm-testers/CN=bpm-test-a" clientAuth
  openssl rand -hex 24 >"$d/bpm-test-b.token"
  printf '%s,bpm-test-b,bpm-test-b,bpm-testers\n' "$(cat "$d/bpm-test-b.token")" >"$d/tokens.csv"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
  openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 600 "$d"/*.key

  k8s_kubeconfig "$d/admin.kubeconfig" admin "" admin cert
  local c
  for c in kube-controller-manager kube-scheduler kubelet kube-proxy; do
    k8s_kubeconfig "$d/$c.kubeconfig" "$c" "" "$c" cert
  done
  k8s_kubeconfig "$K8S_RUN/kubeconfig" \
    bpm-test-a bpm-a bpm-test-a cert \
    bpm-test-b bpm-b bpm-test-b token
}

# ------------------------------------------------------------ host state ---

# Host paths kubelet/containerd/CNI write to regardless of their configured
# roots. We remember which existed before `up` so `down` removes only ours.
K8S_HOST_DIRS=(/var/lib/kubelet /var/lib/kubelet/device-plugins /var/log/containers
  /var/lib/cni /var/lib/cni/results /run/containerd /run/containerd/s /run/netns)

k8s_save_host_state() {
  local h=$K8S_RUN/host d s v
  mkdir -p "$h"
  : >"$h/preexisting"
  for d in "${K8S_HOST_DIRS[@]}"; do [ ! -e "$d" ] || echo "$d" >>"$h/preexisting"; done
  : >"$h/sysctl"
  for s in "${K8S_SYSCTLS[@]}"; do
    v=$(sysctl -n "$s" 2>/dev/null) && printf '%s %s\n' "$s" "$v" >>"$h/sysctl"
  done
}

k8s_rmdir_if_ours() { # remove DIR if we created it and it is empty
  grep -qxF "$1" "$K8S_RUN/host/preexisting" 2>/dev/null || rmdir "$1" 2>/dev/null || true
}

k8s_install() {
  apt_install etcd-server containerd runc containernetworking-plugins conntrack socat iptables openssl curl procps
  [ -x /usr/lib/cni/bridge ] || die "kubernetes: CNI plugins missing from /usr/lib/cni"
}

k8s_render() { # TEMPLATE OUT
  sed -e "s|@RUN@|$K8S_RUN|g" -e "s|@PAUSE_IMAGE@|$K8S_PAUSE_IMAGE|g" -e "s|@NODE_IP@|$K8S_NODE_IP|g" \
    -e "s|@POD_CIDR@|$K8S_POD_CIDR|g" -e "s|@BRIDGE@|$K8S_BRIDGE|g" -e "s|@CNI_NAME@|$K8S_CNI_NAME|g" \
    -e "s|@CGROUP_ROOT@|$K8S_CGROUP_ROOT|g" "$1" >"$2"
}

k8s_network() {
  local prefix=${K8S_POD_CIDR#*/}
  if ! ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then
    ip link add "$K8S_BRIDGE" type bridge
  fi
  ip addr replace "$K8S_NODE_IP/$prefix" dev "$K8S_BRIDGE"
  ip link set "$K8S_BRIDGE" up
  # Service IPs are virtual: until kube-proxy has programmed a Service, a
  # packet to it would follow the default route off the machine (and some
  # gateway may even answer). Route the range onto our bridge instead; the
  # route goes away with the bridge.
  ip route replace "$K8S_SVC_CIDR" dev "$K8S_BRIDGE" src "$K8S_NODE_IP"
}

# kubelet refuses a cgroupRoot that does not exist in every hierarchy (v1).
k8s_cgroups_create() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] || continue
    mkdir -p "$h$K8S_CGROUP_ROOT"
    if [ -f "${h}cpuset.cpus" ]; then # a new cpuset cgroup starts empty: inherit
      [ -n "$(cat "$h$K8S_CGROUP_ROOT/cpuset.cpus")" ] || cat "${h}cpuset.cpus" >"$h$K8S_CGROUP_ROOT/cpuset.cpus"
      [ -n "$(cat "$h$K8S_CGROUP_ROOT/cpuset.mems")" ] || cat "${h}cpuset.mems" >"$h$K8S_CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# ------------------------------------------------------------------- up ----

k8s_node_ready() {
  [ "$(k8s_kubectl get node "$K8S_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
k8s_context_ok() { # CONTEXT NAMESPACE
  KUBECACHEDIR=$K8S_RUN/kube-cache "$K8S_BIN/kubectl" --kubeconfig "$K8S_RUN/kubeconfig" --context "$1" --request-timeout=10s \
    -n "$2" get serviceaccount default -o name >/dev/null 2>&1
}

kubernetes_up() {
  if daemon_alive k8s-apiserver && kubernetes_status >/dev/null 2>&1; then
    log "kubernetes: already up"
    return 0
  fi
  local t0=$SECONDS p=$K8S_RUN/pki
  k8s_install
  k8s_build
  k8s_build_images
  if [ -d "$K8S_RUN/host" ]; then
    log "kubernetes: clearing what a previous run left"
    kubernetes_down
  fi
  log "kubernetes: starting"
  mkdir -p "$K8S_RUN"
  k8s_save_host_state
  if [ -d "$K8S_RUN/logs" ]; then rm -rf "$K8S_RUN/logs.prev"; mv "$K8S_RUN/logs" "$K8S_RUN/logs.prev"; fi
  mkdir -p "$K8S_RUN"/{logs,etcd,containerd,cni/net.d,cni/ipam,kubelet,pod-logs,bin}
  chmod 700 "$K8S_RUN/etcd"
  k8s_network
  k8s_pki
  k8s_render "$K8S_DIR/containerd.toml" "$K8S_RUN/containerd/config.toml"
  k8s_render "$K8S_DIR/cni.conflist" "$K8S_RUN/cni/net.d/10-$K8S_CNI_NAME.conflist"
  k8s_render "$K8S_DIR/kubelet.yaml" "$K8S_RUN/kubelet.yaml"
  k8s_cgroups_create

  local L=$K8S_RUN/logs peer=$((K8S_ETCD_PORT + 1)) etcd_url=http://127.0.0.1:$K8S_ETCD_PORT
  start_daemon k8s-etcd "$L/etcd.log" etcd --name bpm-k8s --data-dir "$K8S_RUN/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bpm-k8s=http://127.0.0.1:$peer" --initial-cluster-state new \
    --logger zap --log-outputs stderr --log-level warn
  start_daemon k8s-containerd "$L/containerd.log" containerd --config "$K8S_RUN/containerd/config.toml"
  start_daemon k8s-apiserver "$L/kube-apiserver.log" "$K8S_BIN/kube-apiserver" \
    --advertise-address="$K8S_NODE_IP" --bind-address="$K8S_NODE_IP" --secure-port="$K8S_API_PORT" \
    --etcd-servers="$etcd_url" --service-cluster-ip-range="$K8S_SVC_CIDR" \
    --client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --token-auth-file="$p/tokens.csv" --authorization-mode=Node,RBAC --allow-privileged=true \
    --cert-dir="$K8S_RUN/apiserver" --profiling=false

  (wait_for "etcd health" 30 curl -fsS --max-time 2 "$etcd_url/health") || k8s_fail etcd
  (wait_for "containerd socket" 30 k8s_ctr version) || k8s_fail containerd
  # Imported before kubelet starts so the first sandbox finds its pause image.
  k8s_ctr images import "$K8S_IMAGE_DIR/pause.tar" >/dev/null
  k8s_ctr images import "$K8S_IMAGE_DIR/probe.tar" >/dev/null
  (wait_for "kube-apiserver /readyz" 90 k8s_curl_api /readyz) || k8s_fail kube-apiserver

  start_daemon k8s-controller-manager "$L/kube-controller-manager.log" "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$p/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$p/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$p/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$K8S_SVC_CIDR" --cert-dir="$K8S_RUN/controller-manager" \
    --flex-volume-plugin-dir="$K8S_RUN/controller-manager/volume-plugins"
  start_daemon k8s-scheduler "$L/kube-scheduler.log" "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$p/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$p/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$p/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false
  start_daemon k8s-kubelet "$L/kubelet.log" "$K8S_BIN/kubelet" \
    --config="$K8S_RUN/kubelet.yaml" --kubeconfig="$p/kubelet.kubeconfig" \
    --root-dir="$K8S_RUN/kubelet" --cert-dir="$K8S_RUN/kubelet/pki" \
    --hostname-override="$K8S_NODE_NAME" --node-ip="$K8S_NODE_IP"
  # --oom-score-adj=0: root lacks CAP_SYS_RESOURCE. conntrack 0s and
  # --conntrack-max-per-core=0 leave the host's conntrack sysctls alone;
  # NodePorts only on the node address, so route_localnet stays untouched.
  start_daemon k8s-proxy "$L/kube-proxy.log" "$K8S_BIN/kube-proxy" \
    --kubeconfig="$p/kube-proxy.kubeconfig" --proxy-mode=iptables --cluster-cidr="$K8S_POD_CIDR" \
    --hostname-override="$K8S_NODE_NAME" --bind-address="$K8S_NODE_IP" \
    --healthz-bind-address="$K8S_NODE_IP:10256" --metrics-bind-address="$K8S_NODE_IP:10249" \
    --nodeport-addresses="$K8S_NODE_IP/32" --iptables-localhost-nodeports=false --oom-score-adj=0 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0

  (wait_for "RBAC and namespaces" 30 k8s_kubectl apply -f "$K8S_DIR/rbac.yaml") || k8s_fail kube-apiserver
  (wait_for "node Ready" 90 k8s_node_ready) || k8s_fail kubelet
  (wait_for "context bpm-test-a" 60 k8s_context_ok bpm-test-a bpm-a) || k8s_fail kube-controller-manager
  (wait_for "context bpm-test-b" 60 k8s_context_ok bpm-test-b bpm-b) || k8s_fail kube-controller-manager

  cat >"$K8S_RUN/bin/import-image" <<EOT
#!/bin/bash
# Imports image archives (OCI layout or \`docker save\`) into the test
# cluster's containerd; pods then use them with imagePullPolicy: Never.
set -euo pipefail
[ \$# -gt 0 ] || { echo "usage: \$0 ARCHIVE..." >&2; exit 2; }
for a in "\$@"; do ctr -a '$K8S_CTRD_SOCK' -n k8s.io images import "\$a" >&2; done
EOT
  chmod 755 "$K8S_RUN/bin/import-image"
  printf '#!/bin/sh\n# kubectl %s; its cache stays in the run dir, not ~/.kube/cache.\nKUBECACHEDIR=%q exec %q "$@"\n' \
    "$K8S_VERSION" "$K8S_RUN/kube-cache" "$K8S_BIN/kubectl" >"$K8S_RUN/bin/kubectl"
  chmod 755 "$K8S_RUN/bin/kubectl"
  log "kubernetes: up in $((SECONDS - t0)) s (node $K8S_NODE_IP, contexts bpm-test-a/bpm-test-b)"
}

# Shows the tail of a failed part's log, then gives up (the dispatcher's
# caller decides whether to run `down`).
k8s_fail() {
  log "kubernetes: $1 did not come up; last lines of its log:"
  tail -n 25 "$K8S_RUN/logs/$1.log" >&2 2>/dev/null || true
  die "kubernetes: $1 failed (logs in $K8S_RUN/logs)"
}

# ----------------------------------------------------------------- down ----

# Our containerd's task bundles name every shim socket, shim PID and pod
# network namespace we created; collect them while they still exist.
k8s_collect_traces() {
  local t=$K8S_RUN/containerd/state/io.containerd.runtime.v2.task/k8s.io b id
  mkdir -p "$K8S_RUN/host"
  for b in "$t"/*/; do
    [ -d "$b" ] || continue
    basename "$b" >>"$K8S_RUN/host/ids"
    [ ! -f "$b/address" ] || sed 's|^unix://||' "$b/address" >>"$K8S_RUN/host/shim-sockets"
    [ ! -f "$b/shim.pid" ] || { cat "$b/shim.pid"; echo; } >>"$K8S_RUN/host/shim-pids"
    grep -o '/var/run/netns/cni-[0-9a-f-]*' "$b/config.json" 2>/dev/null >>"$K8S_RUN/host/netns" || true
  done
  # Sandboxes whose pause task already died still own a netns: ask containerd.
  if [ -S "$K8S_CTRD_SOCK" ]; then
    for id in $(k8s_ctr containers ls -q 2>/dev/null); do
      echo "$id" >>"$K8S_RUN/host/ids"
      k8s_ctr containers info "$id" 2>/dev/null | grep -o '/var/run/netns/cni-[0-9a-f-]*' >>"$K8S_RUN/host/netns" || true
    done
  fi
}

# Deletes every task (SIGKILL) through our containerd, so its shims exit.
k8s_stop_containers() {
  [ -S "$K8S_CTRD_SOCK" ] && daemon_alive k8s-containerd || return 0
  local id
  for id in $(k8s_ctr tasks ls -q 2>/dev/null); do
    timeout 15 ctr -a "$K8S_CTRD_SOCK" -n k8s.io tasks rm -f "$id" >/dev/null 2>&1 || true
  done
}

# A shim outliving containerd (crash, timeout) is stopped by the PID our
# containerd recorded for it, after checking that PID is still that shim.
k8s_kill_shims() {
  local pid
  [ -f "$K8S_RUN/host/shim-pids" ] || return 0
  for pid in $(sort -u "$K8S_RUN/host/shim-pids"); do
    [ -r "/proc/$pid/cmdline" ] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-address $K8S_CTRD_SOCK" || continue
    kill -KILL "$pid" 2>/dev/null || true
  done
}

k8s_iptables_cleanup() {
  [ ! -x "$K8S_BIN/kube-proxy" ] || "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # Whatever --cleanup left (kubelet canaries, CNI portmap/masquerade chains):
  # unhook jumps from other chains, then flush all our chains, then delete them.
  local ipt t rule chains c
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
      while IFS= read -r rule; do
        eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null || true
      done < <("$ipt" -t "$t" -S | grep -E '^-A ' | grep -Ev '^-A (KUBE-|CNI-)' | grep -E -- '-[jg] (KUBE-|CNI-)')
      chains=$("$ipt" -t "$t" -S | awk '/^-N (KUBE-|CNI-)/{print $2}')
      for c in $chains; do "$ipt" -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
}

k8s_unmount() {
  local m
  # Deepest first; lazy as a last resort so `rm` never walks into a live mount.
  for m in $(findmnt -rn -o TARGET | grep -E "^$K8S_RUN(/|$)" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "kubernetes: cannot unmount $m"
  done
}

k8s_clean_host_paths() {
  local f n
  if [ -f "$K8S_RUN/host/netns" ]; then
    for f in $(sort -u "$K8S_RUN/host/netns"); do
      n=${f##*/}
      [ ! -e "/run/netns/$n" ] || ip netns delete "$n" 2>/dev/null ||
        { umount "/run/netns/$n" 2>/dev/null; rm -f "/run/netns/$n"; }
    done
  fi
  k8s_rmdir_if_ours /run/netns
  if [ -f "$K8S_RUN/host/shim-sockets" ]; then
    for f in $(sort -u "$K8S_RUN/host/shim-sockets"); do
      case $f in /run/containerd/s/*) rm -f "$f" ;; esac
    done
  fi
  k8s_rmdir_if_ours /run/containerd/s
  k8s_rmdir_if_ours /run/containerd
  rm -f /var/lib/cni/results/"$K8S_CNI_NAME"-*
  # containerd's own loopback network caches results too, named by sandbox ID.
  if [ -f "$K8S_RUN/host/ids" ]; then
    for f in $(sort -u "$K8S_RUN/host/ids"); do rm -f "/var/lib/cni/results/cni-loopback-$f-lo"; done
  fi
  k8s_rmdir_if_ours /var/lib/cni/results
  k8s_rmdir_if_ours /var/lib/cni
  # kubelet hard-codes these two paths whatever its --root-dir.
  if [ -d /var/log/containers ]; then
    for f in /var/log/containers/*; do
      [ -L "$f" ] && case $(readlink "$f") in "$K8S_RUN"/*) rm -f "$f" ;; esac
    done
  fi
  k8s_rmdir_if_ours /var/log/containers
  if ! grep -qxF /var/lib/kubelet/device-plugins "$K8S_RUN/host/preexisting" 2>/dev/null; then
    rm -rf /var/lib/kubelet/device-plugins
  fi
  k8s_rmdir_if_ours /var/lib/kubelet
}

k8s_clean_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/"$K8S_CGROUP_ROOT"; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "$h" ] || log "kubernetes: cgroup $h still busy"
  done
}

k8s_restore_sysctls() {
  local f=$K8S_RUN/host/sysctl s v
  [ -f "$f" ] || return 0
  while read -r s v; do
    # dockerd needs forwarding too and does not re-check it: leave it on while
    # a docker engine (the docker component's, or the machine's) is running.
    [ "$s" = net.ipv4.ip_forward ] && pgrep -x dockerd >/dev/null && continue
    sysctl -qw "$s=$v" 2>/dev/null || true
  done <"$f"
}

kubernetes_down() {
  local t0=$SECONDS d
  # host/ is written first thing by `up`: without it nothing was started.
  [ -d "$K8S_RUN/host" ] || { ip link del "$K8S_BRIDGE" 2>/dev/null || true; return 0; }
  log "kubernetes: stopping"
  # kubelet first so it does not restart what we stop; then the controllers.
  stop_daemon k8s-kubelet 10
  stop_daemon k8s-scheduler 5
  stop_daemon k8s-controller-manager 5
  k8s_collect_traces
  k8s_stop_containers
  stop_daemon k8s-containerd 10
  k8s_kill_shims
  stop_daemon k8s-proxy 5
  stop_daemon k8s-apiserver 10
  stop_daemon k8s-etcd 10
  k8s_iptables_cleanup
  k8s_unmount
  k8s_clean_host_paths
  ip link del "$K8S_BRIDGE" 2>/dev/null || true
  k8s_clean_cgroups
  k8s_restore_sysctls
  # Keep the logs for post-mortems (the next `up` moves them to logs.prev).
  for d in "$K8S_RUN"/* "$K8S_RUN"/.[!.]*; do
    [ -e "$d" ] || continue
    case $d in "$K8S_RUN/logs" | "$K8S_RUN/logs.prev") ;; *) rm -rf --one-file-system "$d" ;; esac
  done
  log "kubernetes: down in $((SECONDS - t0)) s"
}

# --------------------------------------------------------- status & env ----

kubernetes_status() {
  local rc=0 n
  if ! daemon_alive k8s-apiserver && [ ! -d "$K8S_RUN/host" ]; then
    status_line DOWN kubernetes "not running"
    return 1
  fi
  for n in etcd containerd apiserver controller-manager scheduler kubelet proxy; do
    if daemon_alive "k8s-$n"; then
      status_line OK "kubernetes/$n" "pid $(daemon_pid "k8s-$n")"
    else
      status_line FAIL "kubernetes/$n" "not running (logs in $K8S_RUN/logs)"
      rc=1
    fi
  done
  [ $rc -eq 0 ] || return 1
  if [ "$(k8s_curl_api /readyz 2>/dev/null)" = ok ]; then
    status_line OK kubernetes/readyz "https://$K8S_NODE_IP:$K8S_API_PORT"
  else
    status_line FAIL kubernetes/readyz "https://$K8S_NODE_IP:$K8S_API_PORT not ready"
    rc=1
  fi
  if k8s_node_ready; then
    status_line OK kubernetes/node "$K8S_NODE_NAME Ready ($K8S_NODE_IP)"
  else
    status_line FAIL kubernetes/node "$K8S_NODE_NAME not Ready"
    rc=1
  fi
  local c ns
  for c in a b; do
    ns=bpm-$c
    if k8s_context_ok "bpm-test-$c" "$ns"; then
      status_line OK "kubernetes/bpm-test-$c" "context works (namespace $ns)"
    else
      status_line FAIL "kubernetes/bpm-test-$c" "context cannot read namespace $ns"
      rc=1
    fi
  done
  return $rc
}

kubernetes_env() {
  # The dispatcher only asks when status is healthy; still, nothing when down.
  [ -f "$K8S_RUN/kubeconfig" ] && [ -x "$K8S_RUN/bin/kubectl" ] || return 0
  emit_export BPM_TEST_KUBECONFIG "$K8S_RUN/kubeconfig"
  emit_export BPM_TEST_K8S_CONTEXT_A bpm-test-a
  emit_export BPM_TEST_K8S_CONTEXT_B bpm-test-b
  emit_export BPM_TEST_K8S_NAMESPACE_A bpm-a
  emit_export BPM_TEST_K8S_NAMESPACE_B bpm-b
  emit_export BPM_TEST_K8S_HUB_ADDR "$K8S_NODE_IP"
  emit_export BPM_TEST_K8S_NODE_ADDR "$K8S_NODE_IP"
  emit_export BPM_TEST_K8S_IMPORT "$K8S_RUN/bin/import-image"
  emit_export BPM_TEST_K8S_IMAGE "$K8S_TEST_IMAGE"
  emit_export BPM_TEST_KUBECTL "$K8S_RUN/bin/kubectl"
}

# Called by `scripts/testenv verify-clean`: traces outside our run dir that
# the generic checks (bpmte-* names, BPMTE-* chains, mounts) do not cover.
kubernetes_verify_clean() {
  local rc=0 n ipt t
  for n in etcd containerd apiserver controller-manager scheduler kubelet proxy; do
    if daemon_alive "k8s-$n"; then log "kubernetes: leftover process k8s-$n"; rc=1; fi
  done
  if ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then log "kubernetes: leftover bridge $K8S_BRIDGE"; rc=1; fi
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle raw; do
      n=$("$ipt" -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{printf "%s ", $2}')
      if [ -n "$n" ]; then log "kubernetes: leftover $ipt $t chains: $n"; rc=1; fi
    done
  done
  local ns=(/run/netns/cni-*)
  if [ -e "${ns[0]}" ]; then log "kubernetes: leftover netns: ${ns[*]}"; rc=1; fi
  if ls /var/lib/cni/results/"$K8S_CNI_NAME"-* >/dev/null 2>&1; then log "kubernetes: leftover CNI results"; rc=1; fi
  # Default plugin dirs of kubelet and kube-controller-manager (both moved
  # under our run dir by configuration; a new default would show up here).
  if [ -e /usr/libexec/kubernetes ]; then log "kubernetes: leftover /usr/libexec/kubernetes"; rc=1; fi
  if [ -e /var/lib/kubelet/device-plugins ]; then log "kubernetes: leftover /var/lib/kubelet/device-plugins"; rc=1; fi
  if ls /sys/fs/cgroup/*/"$K8S_CGROUP_ROOT" -d >/dev/null 2>&1; then log "kubernetes: leftover cgroups /$K8S_CGROUP_ROOT"; rc=1; fi
  if findmnt -rn -o TARGET | grep -q "^$K8S_RUN"; then log "kubernetes: leftover mounts under $K8S_RUN"; rc=1; fi
  return $rc
}
