#!/usr/bin/env bash
# Runs the tests.
#
#   bash scripts/test.sh        # everything: setup, cargo build --all-targets, cargo test, a
#                               # release build of the gateway and load generator (for the fault
#                               # tests), the Next.js example's checks and build, Node tests (then
#                               # the relay, recovery, presence and security suites again on a
#                               # Valkey Cluster and on Sentinel), then a short pass of every fuzz
#                               # target (scripts/fuzz.sh)
#   bash scripts/test.sh rust   # setup, cargo build --all-targets, cargo test
#   bash scripts/test.sh node   # setup, cargo build (binaries + examples, and the release build),
#                               # Next.js checks + build, Node tests (all three topologies)
#   bash scripts/test.sh fuzz   # the short fuzz pass only
#
# Exits non-zero if any phase fails; later phases still run when an earlier test phase fails
# (but not when the build fails). The runners' own summaries are printed unchanged: cargo's
# `test result:` lines and node's `# tests` / `# pass` / `# fail` lines (from its TAP reporter).
#
# Environment: NODE_TEST_TIMEOUT (seconds for the whole Node run, default 1500),
# NODE_TEST_TIMEOUT_PER_TEST (seconds for one test or hook, default 300; a test may ask for more),
# CARGO_TEST_TIMEOUT (seconds for cargo test, default 1200), TEST_VERBOSE=1 (child output),
# FUZZ_SECONDS (seconds per fuzz target, default 20; 0 skips the fuzz pass).
# Artefacts (TAP log, screenshots, ...) go to test-output/ (gitignored); tests find it in
# $TEST_OUTPUT_DIR. Tests find the Valkey server at $VALKEY_SERVER (= .cache/bin/valkey-server).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

what=${1:-all}
case $what in
  all | rust | node | fuzz) ;;
  -h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [all|rust|node|fuzz]" >&2
    exit 2
    ;;
esac

export TEST_OUTPUT_DIR=$ROOT/test-output
export VALKEY_SERVER=$ROOT/.cache/bin/valkey-server
export PATH=$ROOT/.cache/bin:$PATH
export CARGO_PROFILE=debug
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
mkdir -p "$TEST_OUTPUT_DIR"
FAILURES=$TEST_OUTPUT_DIR/failed-tests.txt
rm -f "$FAILURES"

log() { printf '[test] %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

failed=()
timings=()

# Runs "$@" as a named phase; records its time and whether it failed (never exits here).
phase() {
  local name=$1 t0 rc=0
  shift
  t0=$(now)
  log "== $name: $*"
  "$@" || rc=$?
  timings+=("$name: $(elapsed "$t0") (exit $rc)")
  log "== $name: exit $rc after $(elapsed "$t0")"
  [[ $rc -eq 0 ]] || failed+=("$name")
  return $rc
}

summary() {
  log "---- phases ----"
  local t
  for t in "${timings[@]}"; do log "$t"; done
  # Repeated last, where a CI log's tail shows it.
  [[ -s $FAILURES ]] && cat "$FAILURES"
  if [[ ${#failed[@]} -gt 0 ]]; then
    log "FAILED: ${failed[*]}"
    exit 1
  fi
  log "all phases passed"
}

# Runs the Node tests: every tests/node/**/*.test.mjs on a single Valkey node, or with a topology
# ("cluster" or "sentinel") the relay, recovery, presence and session-security suites on it
# (VALKEY_TOPOLOGY, see tests/node/lib/valkey.mjs), without the files that start their own topologies.
run_node_tests() {
  local topology=${1:-single} files tap rc=0
  tap=$TEST_OUTPUT_DIR/node-tests${1:+-$1}.tap
  # Node 20's --test takes no recursive glob: pass the explicit, sorted list.
  if [[ $topology == single ]]; then
    mapfile -t files < <(cd tests/node && find . -path ./node_modules -prune -o -type f -name '*.test.mjs' -print | sed 's|^\./||' | sort)
  else
    mapfile -t files < <(cd tests/node && find relay recovery presence security -type f -name '*.test.mjs' ! -name '*topolog*' ! -name 'sharded*' | sort)
  fi
  if [[ ${#files[@]} -eq 0 ]]; then
    log "no tests/node/**/*.test.mjs found"
    return 1
  fi
  log "node test files ($topology Valkey): ${files[*]}"
  rm -f "$tap"
  (
    cd tests/node
    export VALKEY_TOPOLOGY=$topology
    # A test (or hook) over NODE_TEST_TIMEOUT_PER_TEST fails instead of holding up the run, and
    # a file whose tests are done exits even if something it started still holds a handle
    # (its children are killed by lib/procs.mjs's exit handler).
    timeout --kill-after=30 "${NODE_TEST_TIMEOUT:-1500}" \
      node --test --test-concurrency=1 \
      --test-timeout="$((${NODE_TEST_TIMEOUT_PER_TEST:-300} * 1000))" --test-force-exit \
      --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter=tap --test-reporter-destination="$tap" \
      "${files[@]}" </dev/null
  ) || rc=$?
  [[ $rc -eq 124 || $rc -eq 137 ]] && log "node tests timed out after ${NODE_TEST_TIMEOUT:-1500}s"
  # The TAP reporter's closing lines, unchanged (# tests, # pass, # fail, ...).
  if [[ -f $tap ]]; then
    grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap" || true
    # The spec output above is long and CI keeps only its tail: name each failure again here.
    [[ $rc -eq 0 ]] || { log "failed Node tests ($topology Valkey):" && tap_failures "$tap"; } | tee -a "$FAILURES"
  fi
  return $rc
}

# Each failed test's name, location and error (the first lines) from a TAP log.
tap_failures() {
  awk '
    /^ *not ok / { print "[test] FAILED TEST: " $0; inblock = 1; err = 0; next }
    inblock && /^ *\.\.\.$/ { inblock = 0; next }
    inblock && /^ *(location|error|failureType):/ { print "[test]   " $0; err = ($1 == "error:"); n = 0; next }
    inblock && err && n < 8 && /^ +[^ :]+[^:]*$/ { print "[test]   " $0; n++; next }
    inblock { err = 0 }
  ' "$1"
}

T0=$(now)
phase setup bash scripts/setup.sh || summary

case $what in
  all | rust) phase cargo-build cargo build --locked --workspace --all-targets || summary ;;
  # The load generator (bench/) drives the fault matrix's clients (tests/node/chaos).
  node) phase cargo-build cargo build --locked --workspace --bins --examples || summary ;;
esac

# The fault tests under load (tests/node/chaos) run the gateway and the load generator as
# deployed: a debug build spends seconds of CPU per recovery storm that a release build does
# not, and then measures itself (restores timing out on a busy machine) rather than the gateway.
if [[ $what == all || $what == node ]]; then
  phase cargo-build-release cargo build --locked --release -p socket-gateway -p socket-gateway-bench || summary
  export CHAOS_CARGO_PROFILE=release
fi

if [[ $what == all || $what == rust ]]; then
  phase cargo-test timeout --kill-after=30 "${CARGO_TEST_TIMEOUT:-1200}" cargo test --locked --workspace </dev/null || true
fi

if [[ $what == all || $what == node ]]; then
  # The example's event types against schema/events and `tsc --noEmit`, then `next build` (which
  # tests/node/nextjs runs with `next start`; a failed build fails that phase, not only these).
  phase nextjs-check bash scripts/nextjs.sh check || true
  phase nextjs-build bash scripts/nextjs.sh build || true
  phase node-test run_node_tests || true
  phase node-test-cluster run_node_tests cluster || true
  phase node-test-sentinel run_node_tests sentinel || true
fi

# A short pass of every fuzz target (nightly, cargo-fuzz installed on first use), so a parser
# regression that panics on the committed seeds or on what a few seconds find fails CI.
if [[ $what == all || $what == fuzz ]] && [[ ${FUZZ_SECONDS:-20} -gt 0 ]]; then
  phase fuzz bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" </dev/null || true
fi

log "total $(elapsed "$T0")"
summary
