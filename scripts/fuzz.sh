#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60), one after another, and fails
# on any crash, leak, timeout or out-of-memory. Needs the nightly toolchain; installs
# cargo-fuzz from crates.io when it is missing.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets are built optimised with debug assertions and overflow checks (cargo fuzz's
# default), under AddressSanitizer with leak detection. Each run starts from the committed
# seeds (fuzz/corpus/<target>/, read only) plus what earlier runs found (fuzz/work/corpus/
# <target>/, gitignored, where new inputs go). A failing input is saved in fuzz/artifacts/
# <target>/ and the script prints the command that reproduces it. Logs: fuzz/work/logs/.
# At the end, one line per target: executions, executions per second, coverage.
#
# Environment: FUZZ_RSS_MB (memory limit per target, default 2048), FUZZ_TIMEOUT (seconds one
# input may take, default 10), FUZZ_RUNS=N (stop a target after N executions, SECONDS being
# then only a cap), FUZZ_MAX_LEN=N (largest input in bytes, default libFuzzer's 4096: smaller
# inputs run faster), FUZZ_FORK=N (run N processes per target, default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/fuzz
CARGO_FUZZ_VERSION=0.13.2

seconds=${1:-60}
[[ $# -gt 0 ]] && shift
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]" >&2
  exit 2
fi

log() { printf '[fuzz] %s\n' "$*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
  log "the nightly toolchain is missing: rustup toolchain install nightly"
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

cd "$FUZZ"
if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

t0=$(date +%s)
mkdir -p work/logs
# The build's output goes to a log (its tail printed if it fails): a CI log keeps only its tail.
if ! cargo +nightly fuzz build >work/logs/build.log 2>&1; then
  tail -n 60 work/logs/build.log
  log "the fuzz targets do not build (full output: $FUZZ/work/logs/build.log)"
  exit 1
fi
log "built ${#targets[@]} targets in $(($(date +%s) - t0))s"

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "work/corpus/$target" "corpus/$target"
  logfile=work/logs/$target.log
  log "$target: ${seconds}s"
  rc=0
  # -fork keeps going after nothing; a crash ends the run with a non-zero status.
  cargo +nightly fuzz run "$target" "work/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" \
    -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
    -timeout="${FUZZ_TIMEOUT:-10}" \
    -detect_leaks=1 \
    -print_final_stats=1 \
    ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} \
    ${FUZZ_MAX_LEN:+-max_len=$FUZZ_MAX_LEN} \
    ${FUZZ_FORK:+-fork=$FUZZ_FORK} \
    >"$logfile" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ { s += $NF } END { print s + 0 }' "$logfile")
  rate=$(awk '/stat::average_exec_per_sec/ { s += $NF } END { print s + 0 }' "$logfile")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$logfile" | tail -n 1 || true)
  summary+=("$(printf '%-18s %12s execs %8s exec/s  %s' "$target" "$execs" "$rate" "${cov:-cov: ?}")")
  if [[ $rc -ne 0 ]]; then
    failed+=("$target")
    log "$target FAILED (exit $rc); the end of $logfile:"
    tail -n 40 "$logfile"
    artifact=$(grep -oE 'artifacts/[^ ]+' "$logfile" | tail -n 1 || true)
    [[ -n $artifact ]] && log "reproduce: (cd fuzz && cargo +nightly fuzz run $target $artifact)"
  fi
done

log "---- ${seconds}s per target ----"
for line in "${summary[@]}"; do log "$line"; done
log "total $(($(date +%s) - t0))s"
if [[ ${#failed[@]} -gt 0 ]]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "no crash, leak or timeout"
