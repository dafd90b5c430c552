#!/usr/bin/env bash
# What the pipeline costs over the bare engine: one backlog (the shared real-photo corpus
# copied 6 times: 216 images, 1719 MP) resized to the default 512 px JPEG thumbnail
#   bare:      N `imgpipe process` processes, each on its share of the files;
#   dropped:   `imgpipe serve --workers N`, the files renamed into the original bucket's folder
#              as an uploader publishes a finished file (the folder watcher, the engine, the
#              SQLite queues and store, the workers);
#   posted:    the same server, one `POST /process` per file on one keep-alive connection (no
#              watcher).
# Each is timed from the first file to the last output; the best of --repeat runs is kept.
# Beside the wall time, the CPU time (user + system) each spent on the backlog: the bare
# processes split the files statically, so one may finish early and leave a core idle, which
# the wall ratio counts in the pipeline's favour; the CPU ratio does not. Peak RSS: the larger
# bare process, the whole server.
# Prints the times, pipeline/bare, and a profile of one dropped run under strace -c: the
# syscalls the server made per job.
#
# Usage: bench/pipeline.sh [--workers N] [--repeat R] [--copies C] [--bin PATH]
#   --bin   an already built imgpipe (e.g. an older build, for a before/after), instead of
#           building this checkout
# Needs root for apt-get (Debian: strace, curl); results also go to bench/out/pipeline.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

workers=2 repeat=3 copies=6 bin=
while [ $# -gt 0 ]; do
    case $1 in
        --workers) workers=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --copies) copies=$2; shift 2 ;;
        --bin) bin=$(realpath "$2"); shift 2 ;;
        *) echo "usage: bench/pipeline.sh [--workers N] [--repeat R] [--copies C] [--bin PATH]" >&2; exit 2 ;;
    esac
done

scripts/build-deps.sh strace curl time
[ -f bench/out/corpus/.complete ] || { apt-get update -q >/dev/null; bash ../shared/corpus/build.sh bench/out/corpus >/dev/null; }
if [ -z "$bin" ]; then
    cargo build --release --locked --bin imgpipe -q
    bin=${CARGO_TARGET_DIR:-target}/release/imgpipe
fi

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The backlog: every corpus image `copies` times, under distinct names.
mkdir -p "$work/backlog"
for c in $(seq 1 "$copies"); do
    for f in bench/out/corpus/*; do
        case $f in *.tsv) continue ;; esac
        cp "$f" "$work/backlog/c${c}_$(basename "$f")"
    done
done
files=("$work"/backlog/*)
jobs=${#files[@]}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
best() { printf '%s\n' "$@" | sort -n | head -1; }

bare_run() {
    local out=$work/bare t0 pids=() i
    rm -rf "$out"
    t0=$(now)
    for i in $(seq 0 $((workers - 1))); do
        local share=()
        for j in $(seq "$i" "$workers" $((jobs - 1))); do share+=("${files[$j]}"); done
        /usr/bin/time -f '%U %S %M' -o "$work/bare$i.time" "$bin" process --out "$out" "${share[@]}" >/dev/null 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    local wall
    wall=$(elapsed "$t0" "$(now)")
    [ "$(find "$out" -type f | wc -l)" -eq "$jobs" ] || { echo "bare: missing outputs" >&2; exit 1; }
    # wall, CPU seconds of all the processes, the largest peak RSS (kB)
    cat "$work"/bare*.time | awk -v w="$wall" '{ cpu += $1 + $2; if ($3 > rss) rss = $3 }
        END { printf "%s %.2f %d\n", w, cpu, rss }'
}

# The server's CPU seconds (user + system) so far and its peak RSS (kB).
server_usage() {
    local stat
    stat=$(cut -d')' -f2 "/proc/$server/stat")
    # After the command name: state is field 1, utime 12, stime 13 (in clock ticks).
    awk -v t="$(getconf CLK_TCK)" -v rss="$(awk '/^VmHWM/ { print $2 }' "/proc/$server/status")" \
        '{ printf "%.2f %d", ($12 + $13) / t, rss }' <<<"$stat"
}

# Starts `serve` on a fresh data dir, under the command in "$@" (a wrapper) if any; with
# STAGED=1 the backlog is in the bucket first and the folder watcher is off. Sets $server,
# $url and $data.
start_server() {
    data=$work/data-$RANDOM
    mkdir -p "$data/buckets/original" "$data/buckets/resized"
    local port watch=()
    if [ "${STAGED:-0}" = 1 ]; then
        cp -l "${files[@]}" "$data/buckets/original/"
        watch=(--no-watch)
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url=http://127.0.0.1:$port
    IMGPIPE_DATA_DIR=$data IMGPIPE_LOG=warn "$@" "$bin" serve --workers "$workers" --listen "127.0.0.1:$port" \
        "${watch[@]}" >"$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1
}

stop_server() {
    kill -TERM "$server"; wait "$server" 2>/dev/null || true; server=
}

# One light process (not a `find` per poll) waits for every output, so the harness takes as
# little as it can of the two cores the server shares with it.
wait_outputs() {
    python3 - "$data/buckets/resized/resized" "$jobs" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
while not os.path.isdir(d) or len(os.listdir(d)) < n:
    time.sleep(0.02)
PY
}

# Puts the backlog into the original bucket's folder: hard links into a staging folder first,
# then one `mv` renames them in, so every file appears whole at once, as an uploader
# publishes a finished file.
stage() { mkdir -p "$data/staging"; cp -l "${files[@]}" "$data/staging/"; }
publish() { mv "$data"/staging/* "$data/buckets/original/"; }

# Runs "$@" (what hands the server the backlog) and waits for every output; prints the wall
# time, the server's CPU seconds spent meanwhile and its peak RSS (kB).
measured() {
    local t0 before wall
    before=$(server_usage)
    t0=$(now)
    "$@"
    wait_outputs
    wall=$(elapsed "$t0" "$(now)")
    echo "$wall $before $(server_usage)" | awk '{ printf "%s %.2f %d\n", $1, $4 - $2, $5 }'
}

dropped_run() {
    start_server
    stage
    measured publish
    stop_server
}

# One POST /process per file, in order, on one keep-alive connection.
post_all() {
    python3 - "$url" "${files[@]}" <<'PY'
import http.client, json, os, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port)
for path in sys.argv[2:]:
    body = json.dumps({"sourceBucket": "original", "sourceKey": os.path.basename(path),
                       "destinationBucket": "resized"})
    conn.request("POST", "/process", body, {"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status >= 300:
        sys.exit(f"POST /process {path}: {response.status}")
PY
}

posted_run() {
    STAGED=1 start_server
    measured post_all
    stop_server
}

bare=() dropped=() posted=()
for r in $(seq 1 "$repeat"); do
    bare+=("$(bare_run)")
    dropped+=("$(dropped_run)")
    posted+=("$(posted_run)")
    echo "run $r (wall s, CPU s, peak RSS kB): bare ${bare[-1]}; dropped ${dropped[-1]}; posted ${posted[-1]}" >&2
done

# One dropped run under strace: what the server asks of the kernel per job.
start_server strace -f -qq -c -S calls -o "$work/strace.txt"
stage
publish
wait_outputs
# Stop the server itself: strace writes its summary when its tracee exits.
pkill -TERM -P "$server"
wait "$server" 2>/dev/null || true
server=

# Best of the runs: the shortest wall time, the least CPU time, the highest peak RSS.
field() { local i=$1; shift; printf '%s\n' "$@" | awk -v i="$i" '{ print $i }'; }
wall_b=$(best $(field 1 "${bare[@]}")) wall_d=$(best $(field 1 "${dropped[@]}")) wall_p=$(best $(field 1 "${posted[@]}"))
cpu_b=$(best $(field 2 "${bare[@]}")) cpu_d=$(best $(field 2 "${dropped[@]}")) cpu_p=$(best $(field 2 "${posted[@]}"))
most() { printf '%s\n' "$@" | sort -n | tail -1; }
rss_b=$(most $(field 3 "${bare[@]}")) rss_d=$(most $(field 3 "${dropped[@]}")) rss_p=$(most $(field 3 "${posted[@]}"))
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }
{
    echo "pipeline overhead, $jobs images, $workers workers, best of $repeat ($(date -u +%F), $(nproc) cores)"
    echo
    echo "| run | wall s | bare / run | CPU s | bare / run | peak RSS |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| bare: $workers x imgpipe process | $wall_b | 1.000 | $cpu_b | 1.000 | $((rss_b / 1024)) MB each |"
    echo "| dropped into the bucket: serve --workers $workers | $wall_d | $(ratio "$wall_b" "$wall_d") |" \
        "$cpu_d | $(ratio "$cpu_b" "$cpu_d") | $((rss_d / 1024)) MB |"
    echo "| POST /process each: serve --workers $workers | $wall_p | $(ratio "$wall_b" "$wall_p") |" \
        "$cpu_p | $(ratio "$cpu_b" "$cpu_p") | $((rss_p / 1024)) MB |"
    echo
    echo "syscalls of one dropped run, per job (strace -c, the most frequent first; futex and"
    echo "epoll_wait, where idle threads wait, left out):"
    awk -v n="$jobs" '/^[ ]*[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "futex" && $NF != "epoll_wait" {
        printf "  %-16s %8.1f calls/job %8.3f ms/job\n", $NF, $4 / n, $2 / n * 1000 }' "$work/strace.txt" | head -12
} | tee bench/out/pipeline.md
