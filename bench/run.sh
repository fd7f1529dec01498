#!/usr/bin/env bash
# Runs the benchmarks of BENCHMARKS.md and prints the ratio table.
#
#   bash bench/run.sh                      # everything with the default sizes (< 15 min on 2 cores)
#   BENCH_SCENARIOS=S2 BENCH_SERVERS="gateway raw" bash bench/run.sh
#   BASELINE_BIN=../before/target/release/socket-gateway BENCH_SERVERS="baseline gateway" bash bench/run.sh
#   BENCH_SMALL=1 bash bench/run.sh        # a quick smoke run with small sizes
#
# Servers (each against the same Valkey and the same fixture app):
#   node     the seed's design: socket.io 4.8 + @socket.io/redis-adapter (bench/baseline-node)
#   gateway  socket-gateway (release build)
#   raw      bench-raw-server: tokio-tungstenite broadcast, no Socket.IO, no auth (the ceiling)
# Scenarios:
#   S1  idle sockets at S1_LEVELS over S1_INSTANCES instances: RSS per socket
#   S2  S2_SOCKETS sockets in 100 rooms over S2_INSTANCES instances, emitter publishes through
#       Valkey: a rate ramp to saturation, then a fixed rate (half of Node's maximum)
#   S3  S3_SOCKETS sockets connect at once over S3_INSTANCES fresh instances (arrivals spread
#       over 1 s like socket.io-client's first reconnection delay, S3_INFLIGHT handshakes in
#       flight), S3_WAVES times (later waves reconnect right after dropping every socket)
#   S4  (not in the default list) S4_SOCKETS sockets over S4_INSTANCES instances, as many as a
#       process's open files allow (18,000 each): the emitter publishes to no room (`io.emit`),
#       S4_RATE times a second for S4_FIXED_S s; latency from publish to each arrival (its
#       maximum: the last arrival)
# A process may have at most `ulimit -Hn` open files (20,000 where this was written, and only
# CAP_SYS_RESOURCE can raise it): instances default to one per 18,000 sockets, and the load
# generator spreads its sockets over worker processes the same way.
#
# Knobs (environment): BENCH_USERS (10000), BENCH_WORKSPACES (10: each workspace room holds
# BENCH_USERS/10 users, and a user's presence update reaches all of them), BENCH_SERVERS ("node gateway raw"),
# BENCH_SCENARIOS ("S1 S2 S3"), S1_LEVELS (10000,20000,50000), S1_INSTANCES (auto), S1_IDLE_S
# (0: after the last level, measure RSS again once the sockets have idled this long, e.g. 75,
# past the app answers' 60 s cache),
# S2_SOCKETS (10000), S2_INSTANCES (2), S2_RATES (publishes/s of the ramp), S2_STEP_S (3),
# S2_FIXED_S (8), S2_FIXED_RATE (auto = half of Node's maximum, or publishes/s),
# S2_PAYLOAD (160), S3_SOCKETS (20000), S3_INSTANCES (auto), S3_INFLIGHT (200), S3_WAVES (1),
# S4_INSTANCES (2), S4_SOCKETS (18000 per instance), S4_RATE (1), S4_FIXED_S (10),
# BENCH_SOURCES (8 source addresses), BENCH_RECORDERS (0: gateway instances started before the
# measured ones, which then hold both recorder leases and get no sockets; their CPU is not counted),
# GATEWAY_BIN (the gateway binary measured, default target/release/socket-gateway), BASELINE_BIN
# (an earlier gateway build, measured side by side as BENCH_SERVERS kind "baseline"),
# BENCH_INFLIGHT (100 handshakes in flight while filling S1/S2), BENCH_OUT (result folder,
# default target/bench/<time>), BENCH_NO_BUILD=1 (use the existing release binaries),
# BENCH_PROFILE=1 (perf record -e cpu-clock on the gateway during S2's fixed phase and S3's
# storm, into $BENCH_OUT/perf-*.data: it perturbs those figures, use it in a separate run),
# GATEWAY_WRAPPER (a command the gateway runs under, e.g. "valgrind --tool=dhat"),
# BENCH_STOP_GRACE_S (5: seconds between SIGTERM and SIGKILL when stopping a process),
# BENCH_BUDGET_S (810: a scenario/server pair that would start later is skipped and recorded as
# skipped, and fills and storms are cut at 2 min past it, so a run on a busy machine still ends
# within about 15 min; 0 = no budget).
# Results: $BENCH_OUT/results.jsonl (one JSON line per measurement), report.md, logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  exit 0
fi

if [[ -n ${BENCH_SMALL:-} ]]; then
  : "${BENCH_USERS:=2000}" "${S1_LEVELS:=1000,2000}" "${S2_SOCKETS:=2000}" "${S3_SOCKETS:=2000}"
  : "${S2_RATES:=100,200,400}" "${S2_STEP_S:=2}" "${S2_FIXED_S:=3}"
fi
: "${BENCH_USERS:=10000}"
: "${BENCH_WORKSPACES:=10}"
: "${BENCH_SERVERS:=node gateway raw}"
: "${BENCH_SCENARIOS:=S1 S2 S3}"
: "${S1_LEVELS:=10000,20000,50000}"
: "${S1_IDLE_S:=0}"
: "${S2_SOCKETS:=10000}"
: "${S2_INSTANCES:=2}"
: "${S2_RATES:=100,200,350,500,700,1000,1400,2000,2800,4000,5600,8000}"
: "${S2_STEP_S:=3}"
: "${S2_FIXED_S:=8}"
: "${S2_FIXED_RATE:=auto}"
: "${S2_PAYLOAD:=160}"
: "${S3_SOCKETS:=20000}"
: "${S4_INSTANCES:=2}"
: "${S4_SOCKETS:=$((18000 * S4_INSTANCES))}"
: "${S4_RATE:=1}"
: "${S4_FIXED_S:=10}"
: "${S3_INFLIGHT:=200}"
: "${S3_WAVES:=1}"
: "${BENCH_SOURCES:=8}"
: "${BENCH_INFLIGHT:=100}"
: "${BENCH_OUT:=$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}"
: "${BENCH_BUDGET_S:=810}"

SECRET=socket-gateway-fixture-secret-0123456789abcdef
RESULTS=$BENCH_OUT/results.jsonl
LOGS=$BENCH_OUT/logs
mkdir -p "$LOGS" "$BENCH_OUT/run"
: >"$RESULTS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
T0=$(date +%s)

# ---- limits: tens of thousands of sockets on each side
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
log "open files limit $(ulimit -n) per process"
[[ $(ulimit -n) -ge 19000 ]] || log "warning: ulimit -n is $(ulimit -n): lower the sizes or raise the limit"

# ---- processes this script started (all stopped on exit)
PIDS=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq $((${BENCH_STOP_GRACE_S:-5} * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg NAME CMD... : starts CMD in the background, logs to $LOGS/NAME.log, sets BG_PID.
start_bg() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

# wait_addr NAME PID: waits for a `listening on [http://]HOST:PORT` line; sets ADDR=HOST:PORT.
wait_addr() {
  local name=$1 pid=$2 i line
  for i in $(seq 300); do
    line=$(grep -m1 -o 'LISTENING http://[0-9.]*:[0-9]*\|listening on \(http://\)\{0,1\}[0-9.]*:[0-9]*' "$LOGS/$name.log" 2>/dev/null || true)
    if [[ -n $line ]]; then
      ADDR=$(grep -o '[0-9.]*:[0-9]*$' <<<"$line")
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || {
      tail -20 "$LOGS/$name.log" >&2
      die "$name exited before listening"
    }
    sleep 0.1
  done
  tail -20 "$LOGS/$name.log" >&2
  die "$name not listening after 30 s"
}

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# ---- build and dependencies
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  log "building release binaries (socket-gateway, bench-loadgen, bench-raw-server)"
  cargo build --release --locked -p socket-gateway -p socket-gateway-bench --bins >&2
fi
# GATEWAY_BIN: another build of the gateway to measure. BASELINE_BIN: an earlier build measured
# side by side in the same run as server kind "baseline" (BENCH_SERVERS="baseline gateway").
GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/socket-gateway}
BASELINE_BIN=${BASELINE_BIN:-}
if [[ " $BENCH_SERVERS " == *" baseline "* ]]; then
  [[ -x $BASELINE_BIN ]] || die "BENCH_SERVERS names baseline: set BASELINE_BIN to an executable gateway build"
fi
LOADGEN=$ROOT/target/release/bench-loadgen
RAW_BIN=$ROOT/target/release/bench-raw-server
for b in "$GATEWAY_BIN" "$LOADGEN" "$RAW_BIN"; do [[ -x $b ]] || die "$b missing (build first)"; done
if [[ ! -d tests/node/node_modules ]]; then
  log "installing the Node dependencies (tests/node)"
  (cd tests/node && npm_config_nodedir=/usr npm ci --no-audit --no-fund >&2)
fi
[[ -e bench/node_modules ]] || ln -s ../tests/node/node_modules bench/node_modules
VALKEY=${VALKEY_SERVER:-$ROOT/.cache/bin/valkey-server}
[[ -x $VALKEY ]] || bash scripts/setup.sh >&2
[[ -x $VALKEY ]] || die "no valkey-server at $VALKEY"

# ---- machine facts (the load average shows how busy the shared machine was)
{
  echo "date: $(date -Is)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "memory: $(free -m | awk '/Mem:/ {print $2 " MiB"}')"
  echo "kernel: $(uname -r)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git: $(git rev-parse --short HEAD)"
} >"$BENCH_OUT/machine.txt"
env_line() {
  printf '{"scenario":"env","what":"%s","loadavg":"%s","t":%s}\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - T0))" >>"$RESULTS"
}

# ---- Valkey (unlimited pub/sub output buffers: a saturated subscriber is slowed, not cut off)
VPORT=$(free_port)
start_bg valkey "$VALKEY" --port "$VPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --maxclients 20000 --client-output-buffer-limit "pubsub 0 0 0"
VALKEY_PID=$BG_PID
for i in $(seq 100); do grep -q "Ready to accept" "$LOGS/valkey.log" && break || sleep 0.1; done
grep -q "Ready to accept" "$LOGS/valkey.log" || die "valkey did not start"
REDIS_URL=redis://127.0.0.1:$VPORT

# ---- users (cached: creating 10k users takes ~10 s; sessions last 7 days, rebuilt after 5)
CACHE=$ROOT/.cache/bench/users-v2-$BENCH_USERS$([[ $BENCH_WORKSPACES == 10 ]] || echo "-w$BENCH_WORKSPACES")
if [[ ! -f $CACHE/users.jsonl || -n $(find "$CACHE/users.jsonl" -mtime +5 2>/dev/null) ]]; then
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  log "creating $BENCH_USERS users and sessions"
  node bench/users.mjs create --db "$CACHE/app.sqlite" --users "$BENCH_USERS" --out "$CACHE/users.jsonl" --secret "$SECRET" \
    --workspaces "$BENCH_WORKSPACES"
fi
USERS=$CACHE/users.jsonl

# ---- fixture app (the app of the contract; counts the calls it gets)
start_bg fixture-app env PORT=0 DB_FILE="$CACHE/app.sqlite" FIXTURE_TEST_ROUTES=1 BETTER_AUTH_SECRET="$SECRET" \
  node tests/node/fixture-app/server.mjs
APP_PID=$BG_PID
wait_addr fixture-app "$APP_PID"
APP_URL=http://$ADDR
node bench/users.mjs verify --app "$APP_URL" --out "$USERS"

# ---- servers
SERVER_PIDS=()
SERVER_ADDRS=()
GC_URLS=()

# start_server KIND INDEX
start_server() {
  local kind=$1 idx=$2 name="$1-$2-$SCEN"
  case $kind in
    node)
      start_bg "$name" env HOST=127.0.0.1 PORT=0 APP_URL="$APP_URL" REDIS_URL="$REDIS_URL" \
        NEXT_PUBLIC_APP_URL=http://127.0.0.1 node --expose-gc bench/baseline-node/server.mjs
      ;;
    gateway | baseline)
      local bin=$GATEWAY_BIN
      [[ $kind == baseline ]] && bin=$BASELINE_BIN
      # Limits high (a benchmark is one client), no periodic re-validation (the seed has none),
      # a deeper outbound queue so saturation is measured rather than slow-consumer closes.
      start_bg "$name" env -C "$BENCH_OUT/run" PORT=0 APP_URL="$APP_URL" REDIS_URL="$REDIS_URL" \
        GATEWAY_SERVER__HOST=127.0.0.1 GATEWAY_SECURITY__ALLOWED_ORIGINS=http://127.0.0.1 \
        GATEWAY_REDIS__ENABLED=true GATEWAY_LOG__LEVEL=warn,socket_gateway=info \
        GATEWAY_SERVER__MAX_CONNECTIONS=200000 GATEWAY_LIMITS__CONNECT_RATE_PER_S=100000 \
        GATEWAY_LIMITS__EVENTS_PER_S=100000 GATEWAY_LIMITS__EVENTS_BURST=100000 \
        GATEWAY_ENGINE__OUTBOUND_QUEUE=4096 GATEWAY_APP__REVALIDATE_INTERVAL_MS=0 \
        ${GATEWAY_WRAPPER:-} "$bin"
      ;;
    raw)
      start_bg "$name" "$RAW_BIN" --host 127.0.0.1 --port 0 --redis "127.0.0.1:$VPORT"
      ;;
    *) die "unknown server $kind" ;;
  esac
  local pid=$BG_PID
  wait_addr "$name" "$pid"
  SERVER_PIDS+=("$pid")
  SERVER_ADDRS+=("$ADDR")
  [[ $kind == node ]] && GC_URLS+=("http://$ADDR/bench/gc")
  return 0
}

start_servers() {
  local kind=$1 n=$2 i
  SERVER_PIDS=()
  SERVER_ADDRS=()
  GC_URLS=()
  if [[ $kind == gateway || $kind == baseline ]] && [[ ${BENCH_RECORDERS:-0} -gt 0 ]]; then
    # Started first, they take the recorder leases; they get no sockets and are not measured.
    for i in $(seq "$BENCH_RECORDERS"); do start_server "$kind" "recorder$i"; done
    sleep 2
    RECORDER_PIDS=("${SERVER_PIDS[@]}")
    SERVER_PIDS=()
    SERVER_ADDRS=()
  fi
  for i in $(seq "$n"); do start_server "$kind" "$i"; done
  sleep 1 # subscriptions and pools settle
}

stop_servers() {
  local p
  for p in "${SERVER_PIDS[@]}" ${RECORDER_PIDS[@]+"${RECORDER_PIDS[@]}"}; do stop_pid "$p"; done
  SERVER_PIDS=()
  RECORDER_PIDS=()
}

join() {
  local IFS=,
  echo "$*"
}

loadgen() {
  local kind=$1 scen=$2
  shift 2
  local mode=sio
  [[ $kind == raw ]] && mode=raw
  PROFILE=()
  if [[ -n ${BENCH_PROFILE:-} && $kind == gateway ]]; then
    PROFILE=(--profile-cmd "perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p $(join "${SERVER_PIDS[@]}") -o $BENCH_OUT/perf-{tag}-$kind.data")
  fi
  "$LOADGEN" "$@" --mode "$mode" --users "$USERS" --targets "$(join "${SERVER_ADDRS[@]}")" \
    --sources "$BENCH_SOURCES" --server-pids "$(join "${SERVER_PIDS[@]}")" --app-pid "$APP_PID" \
    --valkey-pid "$VALKEY_PID" --app "$APP_URL" --gc-urls "$(join "${GC_URLS[@]}")" \
    --label "server=$kind,instances=${#SERVER_PIDS[@]}" "${PROFILE[@]}" >>"$RESULTS"
}

node_fixed_rate() {
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const s = lines.filter((l) => l.scenario === "S2" && l.phase === "summary" && l.server === "node").pop();
    console.log(s && s.fixed_rate ? s.fixed_rate : "auto");
  ' "$RESULTS"
}

# One instance per 18,000 sockets (see the open-files note above).
per_fd_limit() { echo $((($1 + 17999) / 18000)); }
max_level=$(tr ',' '\n' <<<"$S1_LEVELS" | sort -n | tail -1)
: "${S1_INSTANCES:=$(per_fd_limit "$max_level")}"
: "${S3_INSTANCES:=$(per_fd_limit "$S3_SOCKETS")}"

for SCEN in $BENCH_SCENARIOS; do
  for kind in $BENCH_SERVERS; do
    if [[ $BENCH_BUDGET_S -gt 0 && $(($(date +%s) - T0)) -gt $BENCH_BUDGET_S ]]; then
      log "== $SCEN on $kind skipped: past the time budget (BENCH_BUDGET_S=$BENCH_BUDGET_S)"
      printf '{"scenario":"%s","server":"%s","skipped":"time budget"}\n' "$SCEN" "$kind" >>"$RESULTS"
      continue
    fi
    env_line "$SCEN $kind"
    log "== $SCEN on $kind"
    left=600
    [[ $BENCH_BUDGET_S -gt 0 ]] && left=$((BENCH_BUDGET_S + 120 - ($(date +%s) - T0)))
    [[ $left -ge 60 ]] || left=60
    case $SCEN in
      S1)
        start_servers "$kind" "$S1_INSTANCES"
        loadgen "$kind" S1 idle --levels "$S1_LEVELS" --inflight "$BENCH_INFLIGHT" --settle-s 3 \
          --idle-s "$S1_IDLE_S" --level-timeout-s "$left" || log "S1 on $kind failed"
        ;;
      S2)
        start_servers "$kind" "$S2_INSTANCES"
        fixed=$S2_FIXED_RATE
        [[ $fixed == auto && $kind != node ]] && fixed=$(node_fixed_rate)
        loadgen "$kind" S2 fanout --sockets "$S2_SOCKETS" --redis "127.0.0.1:$VPORT" --rates "$S2_RATES" \
          --step-s "$S2_STEP_S" --fixed-s "$S2_FIXED_S" --fixed-rate "$fixed" --payload-bytes "$S2_PAYLOAD" \
          --inflight "$BENCH_INFLIGHT" || log "S2 on $kind failed"
        ;;
      S3)
        start_servers "$kind" "$S3_INSTANCES"
        loadgen "$kind" S3 storm --sockets "$S3_SOCKETS" --waves "$S3_WAVES" --inflight "$S3_INFLIGHT" \
          --storm-timeout-s "$((left < 180 ? left : 180))" ||
          log "S3 on $kind failed"
        ;;
      S4)
        start_servers "$kind" "$S4_INSTANCES"
        loadgen "$kind" S4 fanout --everyone true --ramp false --sockets "$S4_SOCKETS" \
          --redis "127.0.0.1:$VPORT" --fixed-rate "$S4_RATE" --fixed-s "$S4_FIXED_S" \
          --payload-bytes "$S2_PAYLOAD" --inflight "$BENCH_INFLIGHT" || log "S4 on $kind failed"
        ;;
      *) die "unknown scenario $SCEN" ;;
    esac
    stop_servers
  done
done
env_line "end"
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_OUT/machine.txt"
echo "duration: $(($(date +%s) - T0)) s" >>"$BENCH_OUT/machine.txt"

node bench/report.mjs "$RESULTS" "$BENCH_OUT/machine.txt" | tee "$BENCH_OUT/report.md"
log "done in $(($(date +%s) - T0)) s; results in $BENCH_OUT"
