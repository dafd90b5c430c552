#!/usr/bin/env python3
"""A local stand-in for the AWS Lambda Runtime API, to run a function binary and time it.

It serves, on 127.0.0.1 (a port chosen at run time), the paths a custom runtime (the Rust
`lambda_runtime` crate) and an internal extension call:

  GET  /2018-06-01/runtime/invocation/next           the next event, with the Lambda-Runtime-* headers
  POST /2018-06-01/runtime/invocation/{id}/response  the function's answer
  POST /2018-06-01/runtime/invocation/{id}/error     an invocation error
  POST /2018-06-01/runtime/init/error                an init error
  POST /2020-01-01/extension/register                the runtime's graceful-shutdown helper registers
  GET  /2020-01-01/extension/event/next              never answers: that helper subscribes to no events

It starts the function (the command after `--`) with AWS_LAMBDA_RUNTIME_API and the other
variables Lambda sets, hands it the events of --events (one JSON document a line) one at a
time, and writes --result (JSON): the init time (spawn to the first GET next), each
invocation's time (event handed out to response posted) and CPU time, the process's peak RSS
(VmHWM, read just before the SIGTERM that ends it, as Lambda's shutdown sends once an
extension is registered) and every response body.

Exits 1 when the function fails its init, posts an invocation error, exits early, misses its
deadline or calls a path this stand-in does not know. Standard library only.

usage: lambda_runtime.py --events FILE --result FILE [--memory-mb N] [--cpus 0,1]
                         [--timeout S] [--init-timeout S] [--log FILE] -- COMMAND [ARG...]
"""

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
INVOCATION = re.compile(rf"{RUNTIME}/invocation/([^/]+)/(response|error)")
FUNCTION_NAME = "imgpipe-worker"
ACCOUNT = "123456789012"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def now_ms():
    return time.perf_counter_ns() / 1e6


class Invocation:
    """One event on its way through the function."""

    def __init__(self, payload):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.handed_ms = None
        self.cpu_at_hand = None
        self.done_ms = None
        self.cpu_at_done = None
        self.status = None  # "response" or "error"
        self.body = None
        self.done = threading.Event()


class Runtime:
    """What the HTTP handlers and the driver share."""

    def __init__(self, timeout_s):
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.pid = None
        self.spawn_ms = None
        self.register_ms = None
        self.first_next_ms = None
        self.ready = threading.Event()  # the first GET next arrived
        self.failed = threading.Event()
        self.failure = None
        self.pending = queue.Queue()
        self.by_id = {}

    def fail(self, why):
        with self.lock:
            if self.failure is None:
                self.failure = why
        self.failed.set()

    def cpu_ms(self):
        """CPU time of the whole process (every thread) so far, in ms (10 ms ticks)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of stat(5), utime and stime; [0] here is field 3.
        return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the runtime's client expects
    runtime: Runtime = None  # set by main

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def unknown(self):
        self.runtime.fail(f"the function called {self.command} {self.path}, which this stand-in does not serve")
        self.reply(404, b'{"errorType":"UnknownPath"}')

    def do_GET(self):
        rt = self.runtime
        if self.path == f"{RUNTIME}/invocation/next":
            with rt.lock:
                if rt.first_next_ms is None:
                    rt.first_next_ms = now_ms()
            rt.ready.set()
            inv = rt.pending.get()  # blocks until the driver hands out an event
            deadline = int(time.time() * 1000 + rt.timeout_s * 1000)
            headers = [
                ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
                ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                ("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION_NAME}"),
                ("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"),
            ]
            # Stamped before the write, so a fast answer can never arrive before its start.
            inv.cpu_at_hand = rt.cpu_ms()
            inv.handed_ms = now_ms()
            self.reply(200, inv.payload, headers)
        elif self.path == f"{EXTENSION}/event/next":
            # Subscribed to no events: Lambda never answers; the process is ended by SIGTERM.
            threading.Event().wait()
        else:
            self.unknown()

    def do_POST(self):
        rt = self.runtime
        body = self.read_body()
        match = INVOCATION.fullmatch(self.path)
        if match:
            at, cpu = now_ms(), rt.cpu_ms()
            inv = rt.by_id.get(match.group(1))
            if inv is None or inv.done.is_set():
                rt.fail(f"an answer for unknown or finished request {match.group(1)}")
                self.reply(400, b'{"errorType":"InvalidRequestID"}')
                return
            inv.done_ms, inv.cpu_at_done, inv.status = at, cpu, match.group(2)
            inv.body = body.decode("utf-8", "replace")
            self.reply(202, b'{"status":"OK"}')
            inv.done.set()
        elif self.path == f"{RUNTIME}/init/error":
            rt.fail(f"init error: {body.decode('utf-8', 'replace')}")
            self.reply(202, b'{"status":"OK"}')
        elif self.path == f"{EXTENSION}/register":
            with rt.lock:
                rt.register_ms = now_ms()
            answer = {"functionName": FUNCTION_NAME, "functionVersion": "$LATEST", "handler": "bootstrap",
                      "accountId": ACCOUNT}
            self.reply(200, json.dumps(answer).encode(), [("Lambda-Extension-Identifier", str(uuid.uuid4()))])
        else:
            self.unknown()


def proc_status(pid):
    """VmHWM and VmRSS in KiB, from /proc/PID/status."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    return found


def wait_for(event, proc, rt, seconds):
    """Waits for `event`; False on timeout, a failure or the process's exit."""
    end = time.monotonic() + seconds
    while not event.wait(0.01):
        if rt.failed.is_set() or proc.poll() is not None or time.monotonic() > end:
            return event.is_set()
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", required=True, help="one event payload (JSON) a line")
    ap.add_argument("--result", required=True, help="where the timings go (JSON)")
    ap.add_argument("--memory-mb", type=int, default=2048, help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    ap.add_argument("--cpus", help="CPUs the function may run on, e.g. 1 (default: all)")
    ap.add_argument("--timeout", type=float, default=120, help="function timeout in seconds (the deadline)")
    ap.add_argument("--init-timeout", type=float, default=10, help="Lambda's init limit, seconds")
    ap.add_argument("--log", help="the function's stdout and stderr (default: this process's stderr)")
    ap.add_argument("command", nargs="+", help="the function (after --)")
    args = ap.parse_args()

    with open(args.events, encoding="utf-8") as f:
        payloads = [line.strip().encode() for line in f if line.strip()]
    if not payloads:
        sys.exit("lambda_runtime: no events")

    rt = Runtime(args.timeout)
    Handler.runtime = rt
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(args.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "_HANDLER": "bootstrap",
    })
    cpus = {int(c) for c in args.cpus.split(",")} if args.cpus else None
    log = open(args.log, "ab") if args.log else None  # noqa: SIM115 - lives as long as the process

    def pin():
        if cpus:
            os.sched_setaffinity(0, cpus)

    rt.spawn_ms = now_ms()
    proc = subprocess.Popen(args.command, env=env, stdin=subprocess.DEVNULL, stdout=log or sys.stderr,
                            stderr=subprocess.STDOUT, preexec_fn=pin)
    rt.pid = proc.pid

    invocations = []
    peak = {}
    try:
        if not wait_for(rt.ready, proc, rt, args.init_timeout):
            rt.fail(rt.failure or (f"the function exited during init (status {proc.returncode})"
                                   if proc.poll() is not None else f"no GET next within {args.init_timeout} s"))
        for payload in payloads:
            if rt.failed.is_set():
                break
            inv = Invocation(payload)
            rt.by_id[inv.request_id] = inv
            invocations.append(inv)
            rt.pending.put(inv)
            if not wait_for(inv.done, proc, rt, args.timeout):
                if proc.poll() is not None:
                    rt.fail(f"the function exited during invocation {len(invocations)} (status {proc.returncode})")
                else:
                    rt.fail(rt.failure or f"invocation {len(invocations)} missed its {args.timeout} s deadline")
            elif inv.status == "error":
                rt.fail(f"invocation {len(invocations)} posted an error: {inv.body}")
        if proc.poll() is None:
            peak = proc_status(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Lambda's shutdown, with an extension registered
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.shutdown()

    result = {
        "memory_mb": args.memory_mb,
        "cpus": sorted(cpus) if cpus else sorted(os.sched_getaffinity(0)),
        "init_ms": rt.first_next_ms - rt.spawn_ms if rt.first_next_ms else None,
        "register_ms": rt.register_ms - rt.spawn_ms if rt.register_ms else None,
        "invocations": [
            {
                "request_id": inv.request_id,
                "ms": inv.done_ms - inv.handed_ms if inv.done_ms else None,
                "cpu_ms": inv.cpu_at_done - inv.cpu_at_hand if inv.done_ms and inv.cpu_at_hand is not None else None,
                "status": inv.status,
                "response": inv.body,
            }
            for inv in invocations
        ],
        "peak_rss_kib": peak.get("VmHWM"),
        "rss_at_end_kib": peak.get("VmRSS"),
        "exit_status": proc.returncode,
        "failure": rt.failure,
    }
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    if rt.failure:
        sys.exit(f"lambda_runtime: {rt.failure}")


if __name__ == "__main__":
    main()
