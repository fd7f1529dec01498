#!/usr/bin/env bash
# The Next.js example (examples/nextjs): checks and its production build.
#
#   bash scripts/nextjs.sh check   # event types match schema/events (generated file unchanged),
#                                  # then `next typegen` + `tsc --noEmit`
#   bash scripts/nextjs.sh build   # `next build`, skipped while the sources are unchanged since
#                                  # the last build (stamp in .next/); NEXTJS_REBUILD=1 forces it
#
# Run scripts/setup.sh first (npm ci in examples/nextjs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP=$ROOT/examples/nextjs
export NEXT_TELEMETRY_DISABLED=1

log() { printf '[nextjs] %s\n' "$*"; }

[[ -x $APP/node_modules/.bin/next ]] || {
  log "error: examples/nextjs/node_modules missing: run bash scripts/setup.sh"
  exit 1
}

# A digest of everything the build reads: the app's sources and config, its lockfile, the schemas.
source_stamp() {
  (
    cd "$ROOT"
    find examples/nextjs schema/events \
      \( -path examples/nextjs/node_modules -o -path examples/nextjs/.next -o -path examples/nextjs/data \) -prune -o \
      -type f ! -name '*.tsbuildinfo' ! -name next-env.d.ts -print |
      LC_ALL=C sort | xargs sha256sum
    node --version
  ) | sha256sum | awk '{ print $1 }'
}

case ${1:-} in
  check)
    cd "$APP"
    node scripts/gen-event-types.mjs --check
    npx --no-install next typegen >/dev/null
    npx --no-install tsc --noEmit
    log "tsc --noEmit: no errors"
    ;;
  build)
    want=$(source_stamp)
    if [[ ${NEXTJS_REBUILD:-0} != 1 && -f $APP/.next/BUILD_ID && -f $APP/.next/.source-stamp && $(cat "$APP/.next/.source-stamp") == "$want" ]]; then
      log "next build: sources unchanged since the last build, skipping"
      exit 0
    fi
    cd "$APP"
    npx --no-install next build
    echo "$want" >"$APP/.next/.source-stamp"
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
