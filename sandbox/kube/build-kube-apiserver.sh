#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager 1.20.2 from Debian bookworm's `kubernetes`
# source package (one tree, one toolchain, one recipe: the controller-manager gives the sandbox
# ServiceAccount tokens, namespace deletion and garbage collection).
#
# Why from source: the only registries this project may use are Debian's, PyPI and npm, and none
# of them ships a kube-apiserver binary. Debian's source package is the full upstream tree with
# vendor/, and builds with Debian's Go 1.19 after these fixes (see ARCHITECTURE.md, "Kubernetes API
# for tests"):
#   1. pkg/generated/openapi/zz_generated.openapi.go is not in the tree: generate it with
#      openapi-gen built from vendor/, over the same packages as build/root/Makefile.generated_files;
#   2. vendored modern-go/reflect2 1.0.1 crashes on Go >= 1.18 at the first custom-resource write:
#      replace it with Debian's 1.0.2;
#   3. custom resources with an empty string anywhere ("" for a `type: string` field) are rejected
#      as `must be of type string: "null"`: vendored kube-openapi's validate/type.go tests for null
#      with `reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(data))`, which compares the
#      reflect.Value structs themselves. Since Go 1.16 reflect.Zero of a small type points at the
#      runtime's shared zero buffer, and so does a "" made at run time (the decoder's): the two
#      structs are equal and "" is taken for null. Upstream dropped that check for 1.21
#      (kubernetes/kubernetes#99804, kube-openapi#230; 1.20 was built with Go 1.15): same patch.
#
# Nothing is installed on the system: apt runs with a private configuration (own sources list with
# deb-src lines, own lists and archives), packages are fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` into a private root.
#
# Layout (all under ${FLEXINFRA_CACHE:-~/.cache/flexinfra}/kube, every part safe to delete):
#   downloads/        apt lists, .deb files, the kubernetes source package
#   build.XXXXXX/     the build tree; removed after success, kept after a failure for inspection
#                     (and removed by the next run)
#   v1.20.2-rN/bin/   the result for recipe N; installed atomically (tmp + mv)
#
# RECIPE_VERSION is part of the binary's path (and of SandboxPaths.kube_bin, which reads it from
# this file): bump it whenever a change here changes the binary, so a machine with a binary built
# by an older recipe builds the new one instead of using the old. Older v1.20.2* directories are
# then unused and safe to delete.
#
# Idempotent: with the binary present it exits at once. Takes ~5 min on 2 cores.
set -euo pipefail
# The whole script is one block, read before it runs: editing or updating this file while a
# build is running cannot change what the running build executes. (shellcheck cannot follow the
# functions called through `step` and `trap` inside such a block, hence SC2317.)
# shellcheck disable=SC2317
{

KUBE_VERSION=1.20.2
# Keep this line's form (`RECIPE_VERSION=<integer>`): flexinfra.sandbox.paths parses it.
RECIPE_VERSION=3
CACHE="${FLEXINFRA_CACHE:-$HOME/.cache/flexinfra}"
KUBE="$CACHE/kube"
DL="$KUBE/downloads"
OUT="$KUBE/v$KUBE_VERSION-r$RECIPE_VERSION/bin"
TARGET="$OUT/kube-apiserver"
TARGET_KCM="$OUT/kube-controller-manager"
MIRROR="${FLEXINFRA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${FLEXINFRA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
DEBS=(golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev)

log() { echo "build-kube-apiserver: $*" >&2; }

if [ -x "$TARGET" ] && [ -x "$TARGET_KCM" ]; then
  log "$TARGET and $TARGET_KCM are present; nothing to do"
  exit 0
fi

for tool in apt-get dpkg-deb dpkg-source flock; do
  command -v "$tool" >/dev/null || {
    log "missing '$tool' (Debian packages apt, dpkg, dpkg-dev, util-linux)"; exit 1; }
done
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || {
  log "missing /usr/share/keyrings/debian-archive-keyring.gpg (Debian package debian-archive-keyring)"
  exit 1; }

mkdir -p "$KUBE" "$DL"
# One build at a time: a second caller waits, then finds the binary and exits.
exec 9>"$KUBE/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if [ -x "$TARGET" ] && [ -x "$TARGET_KCM" ]; then
  log "$TARGET and $TARGET_KCM were built by another run; nothing to do"
  exit 0
fi

T0=$(date +%s)
# Leftovers of failed runs (we hold the lock, so nobody is using them).
rm -rf "$KUBE"/build.*
BUILD=$(mktemp -d "$KUBE/build.XXXXXX")
STEP_LOG="$BUILD/step.log"
CURRENT_STEP=""

MAIN_PID=$BASHPID
on_exit() {
  local rc=$?
  [ "$BASHPID" = "$MAIN_PID" ] || return 0
  if [ "$rc" -ne 0 ]; then
    log "FAILED at step: ${CURRENT_STEP:-?} (exit $rc)"
    if [ -s "$STEP_LOG" ]; then
      log "last lines of $STEP_LOG:"
      tail -n 40 "$STEP_LOG" >&2
    fi
    log "build tree kept for inspection in $BUILD (the next run removes it)"
  fi
}
trap on_exit EXIT

# step NAME CMD...: run CMD with its output in $STEP_LOG (shown on failure), timing it.
step() {
  CURRENT_STEP="$1"; shift
  local t; t=$(date +%s)
  log "$CURRENT_STEP ..."
  : >"$STEP_LOG"
  "$@" >>"$STEP_LOG" 2>&1
  log "$CURRENT_STEP done ($(( $(date +%s) - t ))s)"
}

# --- private apt -----------------------------------------------------------------------------
APTDIR="$DL/apt"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial"
cat >"$APTDIR/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bookworm-security main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR bookworm-security main
EOF
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APTDIR/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::Cache::Archives=$APTDIR/archives"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  -o "APT::Architectures=amd64"
  -o "Acquire::Languages=none"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=1"
)
apt_private() { apt-get -q "${APT_OPTS[@]}" "$@"; }
# apt_in DIR ARGS...: apt-get download/source write into the current directory
# (no subshell: a failing subshell would run the EXIT trap inside the step's log redirection)
apt_in() { cd "$1"; shift; apt_private "$@"; cd "$KUBE"; }

have_debs() {
  local p
  for p in "${DEBS[@]}"; do compgen -G "$DL/debs/${p}_*.deb" >/dev/null || return 1; done
}
have_source() { compgen -G "$DL/src/kubernetes_*${KUBE_VERSION}-*.dsc" >/dev/null; }

if ! have_debs || ! have_source; then
  step "apt-get update (private lists in $APTDIR)" apt_private update --error-on=any
fi

# Download into a temp dir, then move into place: an interrupted download never looks complete.
if ! have_debs; then
  rm -rf "$DL/debs.tmp"; mkdir -p "$DL/debs.tmp"
  step "apt-get download ${DEBS[*]}" \
    apt_in "$DL/debs.tmp" download "${DEBS[@]}"
  rm -rf "$DL/debs"; mv "$DL/debs.tmp" "$DL/debs"
fi
if ! have_source; then
  rm -rf "$DL/src.tmp"; mkdir -p "$DL/src.tmp"
  step "apt-get source --download-only kubernetes" \
    apt_in "$DL/src.tmp" source --download-only kubernetes
  rm -rf "$DL/src"; mv "$DL/src.tmp" "$DL/src"
  have_source || { CURRENT_STEP="check source version"
    log "bookworm's kubernetes source is not $KUBE_VERSION: $(ls "$DL/src")"; exit 1; }
fi

# --- private toolchain -----------------------------------------------------------------------
ROOT="$BUILD/root"
mkdir -p "$ROOT"
unpack_debs() {
  local deb
  for deb in "$DL"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  # golang-1.19-go links /usr/lib/go-1.19/src to the system's /usr/share/go-1.19/src:
  # point it at our private copy instead.
  local src="$ROOT/usr/lib/go-1.19/src"
  if [ -L "$src" ] && [ ! -e "$src" ]; then
    rm "$src"; ln -s "$ROOT/usr/share/go-1.19/src" "$src"
  fi
  "$ROOT/usr/lib/go-1.19/bin/go" version
}
export GOROOT="$ROOT/usr/lib/go-1.19"
step "unpack Go 1.19 into a private root" unpack_debs
GO="$GOROOT/bin/go"

# --- source tree in GOPATH layout ------------------------------------------------------------
export GOPATH="$BUILD/gopath"
TREE="$GOPATH/src/k8s.io/kubernetes"
mkdir -p "$(dirname "$TREE")"
DSC=$(compgen -G "$DL/src/kubernetes_*${KUBE_VERSION}-*.dsc" | head -n1)
step "unpack $(basename "$DSC")" dpkg-source -x --skip-debianization "$DSC" "$TREE"

export GO111MODULE=off GOPROXY=off GOFLAGS="" CGO_ENABLED=0 GOOS=linux GOARCH=amd64
export GOCACHE="$BUILD/gocache" GOTMPDIR="" GOENV=off
export PATH="$GOROOT/bin:$PATH"
cd "$TREE"

# --- fix 2: reflect2 1.0.2 -------------------------------------------------------------------
replace_reflect2() {
  local from="$ROOT/usr/share/gocode/src/github.com/modern-go/reflect2"
  local to="vendor/github.com/modern-go/reflect2"
  [ -d "$from" ] || { echo "no $from in golang-github-modern-go-reflect2-dev"; return 1; }
  [ -d "$to" ] || { echo "no $to in the kubernetes tree"; return 1; }
  rm -rf "$to"
  mkdir -p "$to"
  cp -rL "$from"/. "$to"/
  # Only the package itself: no tests, no nested modules.
  find "$to" -name '*_test.go' -delete
  ls "$to"
}
step "replace vendored modern-go/reflect2 with Debian's 1.0.2" replace_reflect2

# --- fix 3: "" is a string, not null ---------------------------------------------------------
# The kube-openapi fork is what apiextensions-apiserver validates custom resources with; the
# vendored github.com/go-openapi/validate has the same line but is not linked into kube-apiserver.
patch_empty_string_validation() {
  local f=vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
  local old=$'\tif data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
  local new=$'\tif data == nil {'
  local n text
  n=$(grep -cxF -- "$old" "$f") || true
  [ "$n" = 1 ] || { echo "$f: expected the line to patch once, found it ${n:-0} times"; return 1; }
  text=$(<"$f")
  printf '%s\n' "${text/"$old"/"$new"}" >"$f"
  grep -qxF -- "$new" "$f" || { echo "$f: patch not applied"; return 1; }
  echo "patched $f"
}
step "patch kube-openapi validate: empty strings are not null" patch_empty_string_validation

# --- fix 1: generated OpenAPI definitions ----------------------------------------------------
OPENAPI_PKG=k8s.io/kubernetes/pkg/generated/openapi
openapi_inputs() {
  # As build/root/Makefile.generated_files (KUBE target): every .go file outside vendor/ (with
  # staging/src/ named as its vendor/ twin) that has a `// +k8s:` tag and `+k8s:openapi-gen=`,
  # minus code-generator and sample-apiserver; packages named k8s.io/kubernetes/<dir>.
  find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) \
      -type f -name '*.go' -print0 \
    | xargs -0 grep --color=never -lZ '^// *+k8s:' \
    | xargs -0 grep --color=never -l '+k8s:openapi-gen=' \
    | sed -e 's|^\./||' -e 's|^staging/src/|vendor/|' -e 's|/[^/]*$||' \
    | LC_ALL=C sort -u \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | sed 's|^|k8s.io/kubernetes/|'
}
gen_openapi() {
  "$GO" build -o "$BUILD/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  local inputs
  inputs=$(openapi_inputs | paste -sd, -)
  echo "openapi-gen inputs: $(tr ',' '\n' <<<"$inputs" | wc -l) packages"
  rm -f pkg/generated/openapi/zz_generated.openapi.go
  "$BUILD/openapi-gen" \
    --input-dirs "$inputs" \
    --output-base "$GOPATH/src" \
    --output-package "$OPENAPI_PKG" \
    --output-file-base zz_generated.openapi \
    --go-header-file vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    --report-filename "$BUILD/api-rules.report"
  test -s pkg/generated/openapi/zz_generated.openapi.go
  # The tree's list of known API-rule violations equals openapi-gen's report when the
  # inputs are right; a difference is worth a warning, not a failure.
  if [ -f api/api-rules/violation_exceptions.list ]; then
    if diff -q <(LC_ALL=C sort api/api-rules/violation_exceptions.list) \
        <(LC_ALL=C sort "$BUILD/api-rules.report") >/dev/null; then
      echo "API-rule report matches api/api-rules/violation_exceptions.list"
    else
      echo "WARNING: API-rule report differs from api/api-rules/violation_exceptions.list"
    fi
  fi
}
step "generate pkg/generated/openapi with openapi-gen" gen_openapi
grep -h -e 'inputs:' -e 'API-rule' "$STEP_LOG" >&2 || true

# --- build -----------------------------------------------------------------------------------
# Version stamps as hack/lib/version.sh sets them: without them the server says v0.0.0-master,
# and kubectl (version skew) and helm (charts' kubeVersion constraints) judge it by that.
ldflags() {
  local pkg ld="-s -w"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
             k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "$ld"
}
build_apiserver() {
  "$GO" build -trimpath -ldflags "$(ldflags)" -o "$BUILD/kube-apiserver" ./cmd/kube-apiserver
  "$BUILD/kube-apiserver" --version
}
step "go build ./cmd/kube-apiserver (2-5 min on 2 cores)" build_apiserver
grep -h Kubernetes "$STEP_LOG" >&2 || true
# Same tree, same flags; the packages it shares with kube-apiserver come from the Go cache.
build_controller_manager() {
  "$GO" build -trimpath -ldflags "$(ldflags)" -o "$BUILD/kube-controller-manager" \
    ./cmd/kube-controller-manager
  "$BUILD/kube-controller-manager" --version
}
step "go build ./cmd/kube-controller-manager (2-5 min on 2 cores)" build_controller_manager
grep -h Kubernetes "$STEP_LOG" >&2 || true

# --- install atomically ----------------------------------------------------------------------
CURRENT_STEP="install $TARGET"
mkdir -p "$OUT"
install -m 0755 "$BUILD/kube-apiserver" "$OUT/.kube-apiserver.tmp.$$"
install -m 0755 "$BUILD/kube-controller-manager" "$OUT/.kube-controller-manager.tmp.$$"
mv -f "$OUT/.kube-controller-manager.tmp.$$" "$TARGET_KCM"
# kube-apiserver last: its presence is what `sandbox up` checks first
mv -f "$OUT/.kube-apiserver.tmp.$$" "$TARGET"
cd /
rm -rf "$BUILD"
log "installed $TARGET and $TARGET_KCM; build took $(( $(date +%s) - T0 ))s"
}; exit $?
