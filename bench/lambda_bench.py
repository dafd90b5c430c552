#!/usr/bin/env python3
"""The job side of bench/lambda.sh, on the AWS emulator (S3 and SQS over plain HTTP):

  queue-url NAME                  print the queue's URL
  upload --bucket B FILE...       put the photos under photos/, write their ETags (JSON) to stdout
  events ...                      write SQS events (JSON lines) of job messages, and their manifest
  check ...                       fail unless every invocation answered with no batch item failures,
                                  every job reported success and every output is in the bucket
  table RESULT...                 the markdown table of lambda_runtime.py's results

The emulator checks no signatures, so requests carry an Authorization header only to name
their service. Standard library only.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid

REGION = "us-east-1"
ACCOUNT = "123456789012"
THUMBNAIL = {"name": "thumbnail", "width": 512, "height": 512, "fit": "inside", "format": "jpeg", "quality": 80}


def die(why):
    sys.exit(f"lambda_bench: FAILED: {why}")


def endpoint():
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        die("AWS_ENDPOINT_URL is not set")
    return url.rstrip("/")


def call(method, path, service, body=None, headers=None):
    """One request to the emulator: (status, headers, body)."""
    auth = f"AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    req = urllib.request.Request(endpoint() + path, data=body, method=method,
                                 headers={"Authorization": auth, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def sqs(action, **params):
    status, _, body = call("POST", "/", "sqs", json.dumps(params).encode(),
                           {"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"})
    if status != 200:
        die(f"SQS {action}: HTTP {status}: {body[:300]!r}")
    return json.loads(body or b"{}")


def queue_url(name):
    return sqs("GetQueueUrl", QueueName=name)["QueueUrl"]


def cmd_queue_url(args):
    print(queue_url(args.name))


def cmd_upload(args):
    etags = {}
    for path in args.files:
        key = f"photos/{os.path.basename(path)}"
        with open(path, "rb") as f:
            status, headers, body = call("PUT", f"/{args.bucket}/{key}", "s3", f.read(),
                                         {"Content-Type": "image/heic" if path.endswith(".heic") else "image/jpeg"})
        if status != 200:
            die(f"PUT s3://{args.bucket}/{key}: HTTP {status}: {body[:300]!r}")
        etags[key] = headers["ETag"].strip('"')
    json.dump(etags, sys.stdout)


def record(body, queue_arn, now_ms):
    """An SQS record as the event source mapping delivers it (aws_lambda_events `SqsMessage`)."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex * 4,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(now_ms),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(now_ms),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def cmd_events(args):
    with open(args.etags, encoding="utf-8") as f:
        etags = json.load(f)
    keys = sorted(etags)
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{args.jobs_queue}"
    manifest = []
    with open(args.out, "w", encoding="utf-8") as out:
        for n in range(args.invocations):
            now_ms = int(time.time() * 1000)
            jobs = []
            for i in range(args.batch):
                # Round the photos, so a batch smaller than their number still meets them all.
                key = keys[(n * args.batch + i) % len(keys)]
                jobs.append({
                    "v": 1, "jobId": str(uuid.uuid4()), "sourceBucket": args.source_bucket, "sourceKey": key,
                    "sourceVersion": etags[key], "destinationBucket": args.destination_bucket,
                    "renditions": [THUMBNAIL], "attempt": 1,
                })
            out.write(json.dumps({"Records": [record(json.dumps(j), queue_arn, now_ms) for j in jobs]}) + "\n")
            manifest.append([{"jobId": j["jobId"], "sourceKey": j["sourceKey"]} for j in jobs])
    with open(args.manifest, "w", encoding="utf-8") as f:
        json.dump(manifest, f)


def expected_key(source_key):
    """The thumbnail's key (the README's Output keys): `<stem>_thumbnail.jpg` for a `.jpg`
    source, `<name>.thumbnail.jpg` for any other."""
    folder, _, name = source_key.rpartition("/")
    if name.endswith(".jpg"):
        return f"resized/{folder}/{name[: -len('.jpg')]}_thumbnail.jpg"
    return f"resized/{folder}/{name}.thumbnail.jpg"


def cmd_check(args):
    with open(args.result, encoding="utf-8") as f:
        result = json.load(f)
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    invocations = result["invocations"]
    if result.get("failure"):
        die(f"the run failed: {result['failure']}")
    if len(invocations) != len(manifest):
        die(f"{len(invocations)} invocations answered, {len(manifest)} handed out")
    for n, inv in enumerate(invocations, 1):
        if inv["status"] != "response":
            die(f"invocation {n}: {inv['status']}: {inv['response']}")
        answer = json.loads(inv["response"])
        if answer.get("batchItemFailures") != []:
            die(f"invocation {n} handed records back: {inv['response']}")

    # Every job reported success on the reports queue, with its outputs.
    wanted = {job["jobId"]: job["sourceKey"] for batch in manifest for job in batch}
    reports = {}
    deadline = time.monotonic() + args.wait
    while len(reports) < len(wanted) and time.monotonic() < deadline:
        got = sqs("ReceiveMessage", QueueUrl=args.reports_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                  VisibilityTimeout=600).get("Messages", [])
        for msg in got:
            report = json.loads(msg["Body"])
            if report.get("jobId") in wanted and report.get("type") != "heartbeat":
                reports[report["jobId"]] = report
            sqs("DeleteMessage", QueueUrl=args.reports_queue, ReceiptHandle=msg["ReceiptHandle"])
    missing = set(wanted) - set(reports)
    if missing:
        die(f"{len(missing)} of {len(wanted)} jobs never reported (e.g. {sorted(missing)[0]})")
    failed = [r for r in reports.values() if r.get("type") != "succeeded"]
    if failed:
        die(f"{len(failed)} jobs did not succeed, e.g. {json.dumps(failed[0])[:500]}")

    # Every output is in the destination bucket, as reported.
    seen = set()
    for job_id, report in reports.items():
        outputs = report.get("outputs") or []
        if [o["key"] for o in outputs] != [expected_key(wanted[job_id])]:
            die(f"job {job_id} reported outputs {outputs}, expected {expected_key(wanted[job_id])}")
        out = outputs[0]
        if max(out["width"], out["height"]) != 512:
            die(f"{out['key']} is {out['width']}x{out['height']}, not 512 on its longest edge")
        if out["key"] in seen:
            continue
        seen.add(out["key"])
        status, headers, _ = call("HEAD", f"/{out['bucket']}/{out['key']}", "s3")
        if status != 200:
            die(f"s3://{out['bucket']}/{out['key']} is missing (HTTP {status})")
        if headers["Content-Type"] != "image/jpeg" or int(headers["Content-Length"]) <= 0:
            die(f"s3://{out['bucket']}/{out['key']}: {headers['Content-Type']}, {headers['Content-Length']} bytes")
    print(f"checked: {len(invocations)} invocations without batch item failures, {len(reports)} jobs succeeded, "
          f"{len(seen)} thumbnails in the bucket", file=sys.stderr)


def cmd_table(args):
    rows = [
        "| memory | CPUs | batch | init | cold invocation | warm invocation (median, min–max) "
        "| warm CPU | warm per image | GB-s per image | peak RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        invs = r["invocations"]
        batch = args.batch
        cold, warm = invs[0], invs[1:] or invs[:1]
        warm_ms = [i["ms"] for i in warm]
        med = statistics.median(warm_ms)
        cpu = statistics.median(i["cpu_ms"] for i in warm)
        gbs = r["memory_mb"] / 1024 * med / 1000 / batch
        rows.append(
            f"| {r['memory_mb']} MB | {len(r['cpus'])} | {batch} | {r['init_ms']:.0f} ms | {cold['ms']:.0f} ms "
            f"| {med:.0f} ms ({min(warm_ms):.0f}–{max(warm_ms):.0f}, {len(warm_ms)} run{'s' if len(warm_ms) > 1 else ''}) | {cpu:.0f} ms "
            f"| {med / batch:.0f} ms | {gbs:.4f} | {r['peak_rss_kib'] / 1024:.0f} MB |"
        )
    print("\n".join(rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("queue-url")
    p.add_argument("name")
    p.set_defaults(fn=cmd_queue_url)
    p = sub.add_parser("upload")
    p.add_argument("--bucket", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(fn=cmd_upload)
    p = sub.add_parser("events")
    p.add_argument("--etags", required=True, help="upload's output")
    p.add_argument("--source-bucket", required=True)
    p.add_argument("--destination-bucket", required=True)
    p.add_argument("--jobs-queue", required=True, help="its name, for the records' eventSourceARN")
    p.add_argument("--invocations", type=int, required=True)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--out", required=True, help="the events, one a line")
    p.add_argument("--manifest", required=True, help="the job ids of each event")
    p.set_defaults(fn=cmd_events)
    p = sub.add_parser("check")
    p.add_argument("--result", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--reports-queue", required=True, help="URL")
    p.add_argument("--wait", type=float, default=30, help="seconds to wait for the reports")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("table")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("results", nargs="+")
    p.set_defaults(fn=cmd_table)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
