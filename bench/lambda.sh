#!/usr/bin/env bash
# The worker Lambda (`imgpipe-worker`) measured on this machine: bench/lambda_runtime.py plays
# the Lambda Runtime API, starts the release binary with the worker function's variables (those
# of infra/template.yaml) pointed at the AWS emulator, and hands it SQS events of BATCH job
# messages each, as the event source mapping would: the first invocation cold, the rest warm.
# The jobs are 10 real photos at 12 MP (the corpus's largest photo JPEGs, cropped to 4000x3000
# and encoded at q95 by `imgpipe process`: baseline, 4:2:0, as phones write them), each to the
# default 512 px thumbnail.
#
# Usage: bench/lambda.sh [INVOCATIONS=6] [CONFIGS=2048:2,1769:1] [BATCH=10]
#   CONFIGS: MEMORY_MB:CPUS,...  AWS_LAMBDA_FUNCTION_MEMORY_SIZE (the engine's memory budget
#   reads it) and how many cores the process may use (Lambda gives one vCPU per 1769 MB).
# Environment:
#   INPUT=heic       the same photos as iPhone-style HEIC (heif-enc, x265 q50) instead of JPEG
#   FUNCTION=PATH    run this function binary, e.g. the `bootstrap` of the zip that
#                    scripts/lambda-build.sh cross-built, instead of a host release build
#
# Measured: init (spawn to the first GET next), each invocation (event handed out to response
# posted) and its CPU time, and the process's peak RSS (VmHWM). Checked, or the run fails: every
# answer is `{"batchItemFailures":[]}`, every job reported success on the reports queue, and
# every thumbnail is in the destination bucket. The table goes to stdout and bench/out/lambda.md
# (lambda-batchB.md for another batch size).
#
# The emulator is local and in Python: S3 reads and writes cost less latency than on AWS but
# more CPU on this machine (the two share its 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
invocations=${1:-6}
configs=${2:-2048:2,1769:1}
batch=${3:-10}
target=${CARGO_TARGET_DIR:-$root/target}

input=${INPUT:-jpeg}
case $input in jpeg | heic) ;; *) echo "INPUT is jpeg or heic, not $input" >&2; exit 2 ;; esac
[ -n "${FUNCTION:-}" ] || cargo build --release --locked -q -p imgpipe-lambda --bin imgpipe-worker
cargo build --release --locked -q --bin imgpipe
if [ "$input" = heic ] && ! command -v heif-enc >/dev/null; then
  apt-get update -q >/dev/null && apt-get install -y -q libheif-examples >/dev/null
fi
corpus=bench/out/corpus
[ -f $corpus/.complete ] || { apt-get update -q >/dev/null; bash ../shared/corpus/build.sh $corpus >/dev/null; }

work=$(mktemp -d)
# An emulator of our own (its own state folder and port): a test run elsewhere neither shares
# nor stops it. The venv is the one scripts/moto.sh keeps under the target folder.
export IMGPIPE_MOTO_DIR=$work/moto IMGPIPE_MOTO_VENV=${IMGPIPE_MOTO_VENV:-$target/moto-venv}
cleanup() {
  scripts/moto.sh stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Copies of what was just built: another build sharing the target folder cannot swap them.
cp "${FUNCTION:-$target/release/imgpipe-worker}" "$work/imgpipe-worker"
cp "$target/release/imgpipe" "$work/"
function_bin=$work/imgpipe-worker bin=$work/imgpipe
moto_env=$(scripts/moto.sh start) || exit 1
eval "$moto_env"

export AWS_ENDPOINT_URL=$IMGPIPE_TEST_AWS_ENDPOINT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export IMGPIPE_DATA_DIR=$work/data IMGPIPE_BLOB_STORE=s3 IMGPIPE_QUEUE_BACKEND=sqs IMGPIPE_LOG=warn
export IMGPIPE_JOBS_QUEUE=bench-jobs IMGPIPE_REPORTS_QUEUE=bench-reports IMGPIPE_DEAD_LETTER_QUEUE=bench-dlq
export IMGPIPE_SOURCE_BUCKET=bench-original IMGPIPE_DESTINATION_BUCKET=bench-resized
"$bin" setup >/dev/null

# 10 photos at 12 MP from the corpus's largest photo JPEGs.
mapfile -t largest < <(awk -F'\t' 'NR > 1 && $5 ~ /^photo/ && $6 == "JPEG" { print $10 "\t" $1 }' \
  $corpus/manifest.tsv | sort -rn | head -10 | cut -f2)
"$bin" process "${largest[@]/#/$corpus/}" --out "$work/photos" --width 4000 --height 3000 --fit cover \
  --enlarge --quality 95 --name 12mp --progress none >/dev/null
ext=jpg
if [ "$input" = heic ]; then
  ext=heic
  for f in "$work"/photos/*.jpg; do heif-enc -q 50 -o "${f%.jpg}.heic" "$f" >/dev/null && rm "$f"; done
fi
python3 bench/lambda_bench.py upload --bucket "$IMGPIPE_SOURCE_BUCKET" "$work"/photos/*.$ext >"$work/etags.json"
photo_mb=$(du -cb "$work"/photos/*.$ext | tail -1 | awk '{ printf "%.1f", $1 / 1e6 / 10 }')
echo "10 photos of 4000x3000 ($input), $photo_mb MB each on average, in s3://$IMGPIPE_SOURCE_BUCKET/photos/" >&2

reports_url=$(python3 bench/lambda_bench.py queue-url "$IMGPIPE_REPORTS_QUEUE")
dlq_url=$(python3 bench/lambda_bench.py queue-url "$IMGPIPE_DEAD_LETTER_QUEUE")
# Other work on the machine shows here, and in the wall times.
load=$(cut -d' ' -f1 /proc/loadavg)
results=()
IFS=, read -ra config_list <<<"$configs"
for config in "${config_list[@]}"; do
  memory=${config%%:*} cpus=${config##*:}
  run=$work/run-$memory-$cpus
  python3 bench/lambda_bench.py events --etags "$work/etags.json" --source-bucket "$IMGPIPE_SOURCE_BUCKET" \
    --destination-bucket "$IMGPIPE_DESTINATION_BUCKET" --jobs-queue "$IMGPIPE_JOBS_QUEUE" \
    --invocations "$invocations" --batch "$batch" --out "$run.events" --manifest "$run.manifest"
  # The function may use the last CPUS cores (core 1 alone in a one-core run).
  cores=$(seq -s, $(($(nproc) - cpus)) $(($(nproc) - 1)))
  # The worker function's variables, as infra/template.yaml sets them, with queue URLs as
  # CloudFormation's !Ref gives them; jobs without a task token report to the reports queue.
  env -i PATH="$PATH" HOME="$HOME" AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_SESSION_TOKEN=test \
    RUST_LOG=info IMGPIPE_ORCHESTRATOR=embedded IMGPIPE_DEAD_LETTER_QUEUE="$dlq_url" \
    IMGPIPE_REPORTS_QUEUE="$reports_url" IMGPIPE_MAX_INPUT_BYTES=104857600 IMGPIPE_MAX_PIXELS=100000000 \
    IMGPIPE_CACHE_CONTROL="public, max-age=300, stale-while-revalidate=86400" IMGPIPE_HEARTBEAT_INTERVAL=20s \
    IMGPIPE_MAX_RECEIVE_COUNT=5 IMGPIPE_WORKERS=2 \
    python3 bench/lambda_runtime.py --events "$run.events" --result "$run.json" --memory-mb "$memory" \
    --cpus "$cores" --timeout 120 --log "$run.log" -- "$function_bin" \
    || { echo "the function's log ($run.log):" >&2; tail -30 "$run.log" >&2; exit 1; }
  python3 bench/lambda_bench.py check --result "$run.json" --manifest "$run.manifest" --reports-queue "$reports_url" \
    || { echo "the function's log ($run.log):" >&2; tail -30 "$run.log" >&2; exit 1; }
  results+=("$run.json")
done

out=bench/out/lambda
[ "$batch" = 10 ] || out=$out-batch$batch
[ "$input" = jpeg ] || out=$out-$input
out=$out.md
mkdir -p bench/out
{
  echo "Worker Lambda (\`imgpipe-worker\`, ${FUNCTION:-release build}) under bench/lambda_runtime.py, AWS emulator on 127.0.0.1;"
  echo "$invocations invocations of $batch jobs each (12 MP $input of $photo_mb MB on average -> 512 px thumbnail), IMGPIPE_WORKERS=2; $(date -u +%F), load average $load before the runs."
  echo
  python3 bench/lambda_bench.py table --batch "$batch" "${results[@]}"
} | tee "$out"
