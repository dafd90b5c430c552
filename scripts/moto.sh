#!/usr/bin/env bash
# The AWS emulator (moto server: S3, SQS, Step Functions) for the AWS tests, on 127.0.0.1.
#
#   eval "$(scripts/moto.sh start)"   # install (once), start on a free port, export the endpoint
#   scripts/moto.sh env [--cli]        # print the exports again (--cli adds AWS_* for running imgpipe by hand)
#   scripts/moto.sh status             # exit 0 when it is running and answering
#   scripts/moto.sh stop               # stop it; safe to call twice or from a trap
#
# Only the `export ...` lines go to stdout; progress and errors go to stderr. `start` is
# idempotent: a running server is reused (and `stop` stops it, whoever started it).
# `eval "$(...)"` hides a failed start (eval of nothing succeeds); a script that must stop
# there writes `env=$(scripts/moto.sh start) || exit 1; eval "$env"`.
# moto is installed from PyPI, pinned, in a venv under target/ (about 25 s the first
# time; the server is ready in under a second). IMGPIPE_MOTO_DIR and IMGPIPE_MOTO_VENV
# move the state (pid, port, log) and the venv.
set -euo pipefail

MOTO_VERSION=5.2.5
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${IMGPIPE_MOTO_DIR:-$ROOT/target/moto}
VENV=${IMGPIPE_MOTO_VENV:-$ROOT/target/moto-venv}
PIDFILE=$STATE_DIR/moto.pid
PORTFILE=$STATE_DIR/moto.port
LOG=$STATE_DIR/moto.log
READY_TIMEOUT=${IMGPIPE_MOTO_READY_TIMEOUT:-30}

say() { echo "moto.sh: $*" >&2; }
die() { say "$*"; exit 1; }

endpoint() { echo "http://127.0.0.1:$(cat "$PORTFILE")"; }

print_env() {
    local url
    url=$(endpoint)
    echo "export IMGPIPE_TEST_AWS_ENDPOINT=$url"
    # The chaos run pauses the emulator (SIGSTOP) to make every client call time out.
    echo "export IMGPIPE_TEST_AWS_PID=$(cat "$PIDFILE")"
    if [[ ${1:-} == --cli ]]; then
        echo "export AWS_ENDPOINT_URL=$url"
        echo "export AWS_REGION=us-east-1"
        echo "export AWS_ACCESS_KEY_ID=test"
        echo "export AWS_SECRET_ACCESS_KEY=test"
    fi
}

# The pid in the pid file, when that process is still our moto server.
running_pid() {
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    grep -q moto_server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

answering() {
    [[ -f $PORTFILE ]] && curl -fs -o /dev/null --max-time 2 "$(endpoint)/moto-api/data.json"
}

install() {
    local stamp=$VENV/.moto-$MOTO_VERSION-cause
    [[ -x $VENV/bin/moto_server && -f $stamp ]] && return 0
    say "installing moto[server]==$MOTO_VERSION into $VENV"
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (install python3-venv)"
    "$VENV/bin/pip" install --disable-pip-version-check -q "moto[server]==$MOTO_VERSION" >&2 \
        || die "pip could not install moto[server]==$MOTO_VERSION (is PyPI reachable?)"
    keep_task_failure_cause
    touch "$stamp"
}

# moto 5.2.5 drops SendTaskFailure's `cause` (its handler passes only the error on), where
# Step Functions records it in the TaskFailed event: a job's failure reason would read as
# "no cause given". One line makes the emulator keep it, as the service does.
keep_task_failure_cause() {
    local file
    file=$("$VENV/bin/python" -c 'import moto.stepfunctions.responses as r; print(r.__file__)') \
        || die "cannot find moto's Step Functions handler"
    grep -q 'send_task_failure(task_token, error=error, cause=' "$file" && return 0
    sed -i 's/self.stepfunction_backend.send_task_failure(task_token, error=error)/self.stepfunction_backend.send_task_failure(task_token, error=error, cause=self._get_param("cause"))/' "$file"
    grep -q 'send_task_failure(task_token, error=error, cause=' "$file" \
        || die "could not patch $file to keep SendTaskFailure's cause"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    mkdir -p "$STATE_DIR"
    # One start at a time, so parallel callers share one server.
    exec 9>"$STATE_DIR/lock"
    flock 9
    if running_pid >/dev/null && answering; then
        print_env "$@"
        return 0
    fi
    stop_server
    install
    local port pid i
    port=$(free_port)
    echo "$port" >"$PORTFILE"
    # setsid: not in the caller's process group, so a Ctrl-C there does not kill it
    # half-way; stdout/stderr to the log so `$(moto.sh start)` returns at once.
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        answering && break
        kill -0 "$pid" 2>/dev/null || die "moto_server exited at start; its log ($LOG):$(echo; tail -20 "$LOG")"
        sleep 0.1
    done
    answering || { stop_server; die "moto_server did not answer on port $port within ${READY_TIMEOUT}s"; }
    # Step Functions runs state machines for real only with this set, before any is created.
    curl -fsS -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' \
        -d '{"stepfunctions":{"execute_state_machine":true}}' "$(endpoint)/moto-api/config" \
        || { stop_server; die "could not configure moto (POST /moto-api/config)"; }
    say "moto_server $MOTO_VERSION on $(endpoint) (pid $pid, log $LOG)"
    print_env "$@"
}

stop_server() {
    local pid i
    if pid=$(running_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        say "stopped moto_server (pid $pid)"
    fi
    rm -f "$PIDFILE" "$PORTFILE"
}

case ${1:-} in
start) shift; start "$@" ;;
stop)
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/lock"
    flock 9
    stop_server
    ;;
env)
    shift
    running_pid >/dev/null && answering || die "not running; start it with: eval \"\$(scripts/moto.sh start)\""
    print_env "$@"
    ;;
status)
    if running_pid >/dev/null && answering; then
        say "running on $(endpoint)"
    else
        say "not running"
        exit 1
    fi
    ;;
*) die "usage: scripts/moto.sh start|stop|env [--cli]|status" ;;
esac
