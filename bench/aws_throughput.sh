#!/usr/bin/env bash
# Jobs per second through the whole pipeline on S3 + SQS (the AWS emulator on 127.0.0.1), per
# worker slot: for each slot count W, `imgpipe submit` N images while only the orchestrator runs
# (`serve --workers 0`), then start one `imgpipe worker --workers W` (it receives in batches of
# up to 10) and time it until every job is Success (the last job's updatedAt). Each W starts
# from an emptied emulator and a fresh data folder.
#
# Usage: bench/aws_throughput.sh [--photos] [N] [SLOTS]
#   bench/aws_throughput.sh 200 1,2,4,8      # small images (default N=200, SLOTS=1,2,4,8)
#   bench/aws_throughput.sh --photos 72 1,2  # real photos (default N=72: the corpus twice)
#
# Small images (the seed photo at 64 px) keep the image engine out of the way: that measures
# the queueing, storage and orchestration path, and the emulator's own speed bounds it (real
# SQS/S3 are faster per call but farther away). `--photos` runs the shared real-photo corpus
# (36 images, 286.5 MP: JPEG, PNG, WebP) to the default 512 px thumbnail, so real decoding is
# in the figure. Columns besides the rates: the worker's CPU time per job; the orchestrator's
# and the emulator's CPU while the worker ran (the emulator is one Python process: near 100 %
# of a core, it is the bound); the worker's peak RSS (VmHWM), reached at full concurrency.
# Results also go to bench/out/aws_throughput[-photos].md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
photos=0
if [ "${1:-}" = --photos ]; then photos=1; shift; fi
if [ "$photos" = 1 ]; then n=${1:-72}; else n=${1:-200}; fi
slots=${2:-1,2,4,8}
target=${CARGO_TARGET_DIR:-$root/target}

cargo build --release --locked -q --bin imgpipe
corpus=bench/out/corpus
if [ "$photos" = 1 ] && [ ! -f $corpus/.complete ]; then
  apt-get update -q >/dev/null
  bash ../shared/corpus/build.sh $corpus >/dev/null
fi

work=$(mktemp -d)
# An emulator of our own (its own state folder and port): a test run elsewhere neither shares
# nor stops it. The venv is the one scripts/moto.sh keeps under the target folder.
export IMGPIPE_MOTO_DIR=$work/moto IMGPIPE_MOTO_VENV=${IMGPIPE_MOTO_VENV:-$target/moto-venv}
worker_pid='' serve_pid=''
stop() { # PID...: SIGTERM each one given, and wait for it
  local pid
  for pid in "$@"; do
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
}
cleanup() {
  stop "$worker_pid" "$serve_pid"
  scripts/moto.sh stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A copy of what was just built: another build sharing the target folder cannot swap it.
cp "$target/release/imgpipe" "$work/"
bin=$work/imgpipe
moto_env=$(scripts/moto.sh start) || exit 1
eval "$moto_env"
moto_pid=$IMGPIPE_TEST_AWS_PID

export AWS_ENDPOINT_URL=$IMGPIPE_TEST_AWS_ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export IMGPIPE_BLOB_STORE=s3 IMGPIPE_QUEUE_BACKEND=sqs IMGPIPE_LOG=warn
export IMGPIPE_JOBS_QUEUE=bench-jobs IMGPIPE_REPORTS_QUEUE=bench-reports IMGPIPE_DEAD_LETTER_QUEUE=bench-dlq
export IMGPIPE_SOURCE_BUCKET=bench-original IMGPIPE_DESTINATION_BUCKET=bench-resized

# The N inputs, under distinct names (a job's id follows from its source, so copies are jobs too).
mkdir -p "$work/in"
if [ "$photos" = 1 ]; then
  mapfile -t files < <(find $corpus -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.webp' \) | sort)
  what="real photos from the corpus (${#files[@]} images, 286.5 MP a pass: JPEG, PNG, WebP) -> 512 px thumbnail"
else
  "$bin" process tests/fixtures/myphoto.jpg --out "$work/small" --width 64 --height 64 --progress none >/dev/null
  files=("$work/small/myphoto_thumbnail.jpg")
  what="small images (64 px JPEG): the queueing, storage and orchestration path: emulator-bound"
fi
for i in $(seq 0 $((n - 1))); do
  f=${files[i % ${#files[@]}]}
  ln -s "$(realpath "$f")" "$work/in/$i-$(basename "$f")"
done

cpu_ticks() { # PID: user + system CPU of the process so far, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
now() { date +%s.%N; }
# `jobs --json` on stdin -> "SUCCEEDED FAILED LAST": LAST is when the last job became Success
# (its updatedAt, epoch seconds), so the polling interval is not in the figure.
tally() {
  python3 -c '
import json, sys
from datetime import datetime
jobs = json.load(sys.stdin)
ok = [datetime.fromisoformat(j["updatedAt"].replace("Z", "+00:00")).timestamp()
      for j in jobs if j["state"] == "Success"]
print(len(ok), sum(j["state"] == "Fail" for j in jobs), f"{max(ok, default=0):.3f}")'
}
# Other work on the machine shows here, and in the wall times.
load=$(cut -d' ' -f1 /proc/loadavg)
rows=()
IFS=, read -ra slot_list <<<"$slots"
for w in "${slot_list[@]}"; do
  curl -fsS -o /dev/null -X POST "$AWS_ENDPOINT_URL/moto-api/reset"
  export IMGPIPE_DATA_DIR=$work/data-$w
  "$bin" setup >/dev/null
  "$bin" serve --listen 127.0.0.1:0 --workers 0 --no-watch >"$work/serve-$w.log" 2>&1 &
  serve_pid=$!
  sleep 1
  t0=$(now)
  "$bin" submit --progress none "$work"/in/* >/dev/null
  t1=$(now) moto_t1=$(cpu_ticks "$moto_pid") serve_t1=$(cpu_ticks "$serve_pid")
  "$bin" worker --workers "$w" >"$work/worker-$w.log" 2>&1 &
  worker_pid=$!
  deadline=$(($(date +%s) + 600))
  while :; do
    states=$("$bin" jobs --json --limit "$n")
    read -r succeeded failed last < <(tally <<<"$states")
    [ "$succeeded" -ge "$n" ] && break
    if [ "$failed" -gt 0 ]; then
      echo "$failed jobs failed with $w slots:" >&2
      "$bin" jobs --limit "$n" >&2 || true
      exit 1
    fi
    if ! kill -0 "$worker_pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
      echo "the worker stopped, or $n jobs took over 600 s, with $w slots ($succeeded done); its log:" >&2
      tail -20 "$work/worker-$w.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  t2=$(now) moto_t2=$(cpu_ticks "$moto_pid") serve_t2=$(cpu_ticks "$serve_pid") worker_cpu=$(cpu_ticks "$worker_pid")
  peak_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$worker_pid/status")
  stop "$worker_pid" "$serve_pid"
  worker_pid='' serve_pid=''
  rows+=("$(python3 - "$n" "$w" "$t0" "$t1" "$last" "$t2" "$worker_cpu" "$((serve_t2 - serve_t1))" \
    "$((moto_t2 - moto_t1))" "$(getconf CLK_TCK)" "$peak_kib" <<'PY'
import sys
n, w = int(sys.argv[1]), int(sys.argv[2])
t0, t1, last, t2 = map(float, sys.argv[3:7])
worker, engine, moto, hz, peak_kib = map(int, sys.argv[7:12])
rate, busy = n / (last - t1), t2 - t1
print(f"| {w} | {n} | {n / (t1 - t0):.1f} | {last - t1:.2f} | {rate:.1f} | {rate / w:.1f} "
      f"| {1000 * worker / hz / n:.0f} ms | {100 * engine / hz / busy:.0f} % | {100 * moto / hz / busy:.0f} % "
      f"| {peak_kib / 1024:.0f} MB |")
PY
  )")
  echo "${rows[-1]}" >&2
done

if [ "$photos" = 1 ]; then out=bench/out/aws_throughput-photos.md; else out=bench/out/aws_throughput.md; fi
mkdir -p bench/out
{
  echo "One \`imgpipe worker\` on S3 + SQS (the AWS emulator, moto server on 127.0.0.1), embedded orchestrator"
  echo "(\`serve --workers 0\`); $what; $(nproc) cores, $(date -u +%F), load average $load before the runs."
  echo
  echo "| slots | jobs | submitted jobs/s | seconds | jobs/s | jobs/s per slot | worker CPU per job | orchestrator CPU | emulator CPU | worker peak RSS |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${rows[@]}"
} | tee "$out"
