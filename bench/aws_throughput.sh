#!/usr/bin/env bash
# Jobs per second through the whole pipeline on S3 + SQS (the AWS emulator on 127.0.0.1):
# `imgpipe submit` N small images while only the orchestrator runs (`serve --workers 0`), then
# start one `imgpipe worker` with W slots (it receives in batches of up to 10) and time it
# until every job is Success: the submit rate and the processing rate.
#
# Usage: bench/aws_throughput.sh [N=200] [W=8]
# Small images keep the engine out of the way: this measures the queueing, storage and
# orchestration path, and the emulator's own speed bounds it (real SQS/S3 are faster per call
# but farther away).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-200}
workers=${2:-8}

cargo build --release --bin imgpipe -q
bin=$root/target/release/imgpipe
started_moto=0
if ! scripts/moto.sh status >/dev/null 2>&1; then started_moto=1; fi
eval "$(scripts/moto.sh start)"
work=$(mktemp -d)
cleanup() {
  for pid in ${worker_pid:-} ${serve_pid:-}; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$work"
  if [ "$started_moto" = 1 ]; then scripts/moto.sh stop; fi
}
trap cleanup EXIT

id=$(date +%s%N | tail -c 9)
export AWS_ENDPOINT_URL=$IMGPIPE_TEST_AWS_ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export IMGPIPE_DATA_DIR=$work/data IMGPIPE_BLOB_STORE=s3 IMGPIPE_QUEUE_BACKEND=sqs IMGPIPE_LOG=warn
export IMGPIPE_JOBS_QUEUE=bench-jobs-$id IMGPIPE_REPORTS_QUEUE=bench-reports-$id IMGPIPE_DEAD_LETTER_QUEUE=bench-dlq-$id
export IMGPIPE_SOURCE_BUCKET=bench-original-$id IMGPIPE_DESTINATION_BUCKET=bench-resized-$id

"$bin" setup >/dev/null

# N distinct small JPEGs (the seed photo at 64 px, renamed).
mkdir -p "$work/in"
"$bin" process tests/fixtures/myphoto.jpg --out "$work/small" --width 64 --height 64 >/dev/null
for i in $(seq 1 "$n"); do cp "$work/small/myphoto_thumbnail.jpg" "$work/in/img$i.jpg"; done

"$bin" serve --listen 127.0.0.1:0 --workers 0 --no-watch >/dev/null &
serve_pid=$!
sleep 1
t0=$(date +%s.%N)
"$bin" submit "$work"/in/*.jpg >/dev/null
t1=$(date +%s.%N)
"$bin" worker --workers "$workers" &
worker_pid=$!
while :; do
  done_count=$("$bin" jobs --json --limit "$n" | grep -c '"state": "Success"' || true)
  [ "$done_count" -ge "$n" ] && break
  sleep 0.2
done
t2=$(date +%s.%N)
python3 - "$n" "$workers" "$t0" "$t1" "$t2" <<'PY'
import sys
n, w, t0, t1, t2 = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"{n} jobs on S3+SQS (emulator): submitted at {n/(t1-t0):.1f} jobs/s; "
      f"one worker with {w} slots processed them at {n/(t2-t1):.1f} jobs/s ({t2-t1:.1f} s)")
PY
