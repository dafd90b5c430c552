#!/usr/bin/env bash
# Tests the live HTTP API against its own OpenAPI description with schemathesis: starts
# `imgpipe serve` on a free 127.0.0.1 port with API keys and a throw-away data dir holding the
# seed photo, runs every schemathesis check but `positive_data_acceptance` (a well-formed
# request for a source that does not exist is rightly a 404) within a time budget, then checks
# the server is still up and stops it. Exit 1 on any failure: a 5xx, a status, header or body
# the description does not list, bad input accepted, a route that ignores its key.
#
#   scripts/api-check.sh [BINARY] [SECONDS]   # default target/debug/imgpipe, 60 s
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

SCHEMATHESIS_VERSION=4.32.5
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/imgpipe}
budget=${2:-60}
say() { echo "api-check.sh: $*" >&2; }
[[ -x $bin ]] || { say "no imgpipe binary at $bin (cargo build first)"; exit 1; }

# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh
st=$(pinned_venv "${IMGPIPE_API_CHECK_VENV:-$root/target/api-check/schemathesis}" "schemathesis==$SCHEMATHESIS_VERSION")

work=$(mktemp -d)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data/buckets/original"
cp tests/fixtures/myphoto.jpg "$work/data/buckets/original/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=operator:api-check-$RANDOM$RANDOM
IMGPIPE_API_KEYS=$key IMGPIPE_LOG=warn "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" \
    --workers 1 >"$work/serve.log" 2>&1 &
server=$!
url=http://127.0.0.1:$port
for _ in $(seq 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { say "imgpipe serve exited:"; cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
done

say "schemathesis $SCHEMATHESIS_VERSION against $url/openapi.json for up to ${budget}s"
status=0
(cd "$work" && "$st/schemathesis" run "$url/openapi.json" \
    --header "Authorization: Bearer ${key#operator:}" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-time "$budget" --request-timeout 40 --workers 2 --seed 1 \
    --suppress-health-check too_slow,filter_too_much --output-truncate true) || status=$?

if ! kill -0 "$server" 2>/dev/null; then
    say "imgpipe serve died during the run:"; tail -50 "$work/serve.log" >&2; exit 1
fi
if grep -q 'panicked' "$work/serve.log"; then
    say "imgpipe serve panicked:"; grep -B2 -A5 'panicked' "$work/serve.log" >&2; exit 1
fi
exit "$status"
