#!/usr/bin/env bash
# The fault matrix and the soak at full size, on release builds (RELIABILITY.md).
#
#   bash scripts/chaos.sh                 # the fault matrix: 5,000 sockets, every fault (~30 min)
#   bash scripts/chaos.sh soak            # the soak: 20,000 sockets, 30 minutes of load (~40 min)
#   CHAOS_SOCKETS=1000 CHAOS_FAULTS=baseline,gateway-kill bash scripts/chaos.sh
#   CHAOS_MINUTES=5 CHAOS_SOCKETS=5000 bash scripts/chaos.sh soak
#
# Knobs (environment): CHAOS_SOCKETS (matrix 5000, soak 20000), CHAOS_FAULTS (comma-separated
# ids of tests/node/chaos/faults.mjs, in the order to run; default all), CHAOS_MINUTES (soak,
# 30), CHAOS_OUT (result folder, default target/chaos/<time> or target/soak/<time>),
# CHAOS_NO_BUILD=1 (use the existing release binaries).
# The partition fault needs root (network namespaces and veth pairs); without it it is skipped.
# Results: results.json and table.md (matrix), soak.json, soak.md and samples.jsonl (soak), every
# process's log and every client's records in the result folder. Exit status 1 when a fault
# broke its expectations (lost or duplicated messages, clients not back, panics...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

what=${1:-matrix}
case $what in
  matrix | soak) ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [matrix|soak]" >&2
    exit 2
    ;;
esac

WITH_NGINX=1 bash scripts/setup.sh
if [[ -z ${CHAOS_NO_BUILD:-} ]]; then
  cargo build --release --locked -p socket-gateway -p socket-gateway-bench
fi
export CARGO_PROFILE=release
export VALKEY_SERVER=$ROOT/.cache/bin/valkey-server
# Tens of thousands of sockets: as many open files as this process may have.
ulimit -n "$(ulimit -Hn)" || true
echo "open files limit $(ulimit -n) per process" >&2

stamp=$(date +%Y%m%d-%H%M%S)
if [[ $what == matrix ]]; then
  out=${CHAOS_OUT:-$ROOT/target/chaos/$stamp}
  args=(--sockets "${CHAOS_SOCKETS:-5000}" --out "$out")
  [[ -n ${CHAOS_FAULTS:-} ]] && args+=(--faults "$CHAOS_FAULTS")
  exec node tests/node/chaos/matrix.mjs "${args[@]}"
else
  out=${CHAOS_OUT:-$ROOT/target/soak/$stamp}
  exec node tests/node/chaos/soak.mjs --sockets "${CHAOS_SOCKETS:-20000}" --minutes "${CHAOS_MINUTES:-30}" --out "$out"
fi
