#!/usr/bin/env bash
# Cost per million images on AWS, per deployment shape: runs N jobs per shape on the AWS
# emulator (moto server, started and stopped here), counts every AWS request the processes
# send, and prices them with bench/cost/prices.json and bench/cost/workload.json.
#
#   bench/cost.sh          # 200 jobs per shape
#   bench/cost.sh 50       # fewer
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${1:-200}
scripts/build-deps.sh python3-venv
trap 'scripts/moto.sh stop' EXIT
eval "$(scripts/moto.sh start)"
log=${CARGO_TARGET_DIR:-target}/cost.log
mkdir -p "$(dirname "$log")"
# The tables only; the whole output (the build, a failed check) when the run fails.
if IMGPIPE_COST_JOBS=$jobs cargo test --locked --test cost -- --nocapture >"$log" 2>&1; then
    sed -n '/^cost per million/,/^empty receives/p' "$log"
else
    cat "$log" >&2
    exit 1
fi
