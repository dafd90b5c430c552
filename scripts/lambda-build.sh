#!/usr/bin/env bash
# Builds the three Lambda functions as zips for provided.al2023 (x86_64) with cargo-lambda,
# which cross-links with zig against an older glibc, so the binaries run on Lambda whatever
# this machine's glibc is. cargo-lambda (with zig) comes from PyPI, pinned, into a venv under
# target/ the first time; Debian's cmake and nasm build the bundled libjpeg-turbo.
#
#   scripts/lambda-build.sh      # → target/lambda/<function>/bootstrap.zip
#
# A separate check, not part of scripts/test.sh: a cold build takes minutes. It uses its own
# target dir (target/cargo-lambda) so its release cross-build never contends with, or
# changes the fingerprints of, the shared target dir's builds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CARGO_LAMBDA_VERSION=1.9.2
VENV=${IMGPIPE_CARGO_LAMBDA_VENV:-$root/target/cargo-lambda-venv}
FUNCTIONS=(imgpipe-api imgpipe-s3-event imgpipe-worker)
say() { echo "lambda-build.sh: $*" >&2; }

for tool in cmake nasm; do
    command -v "$tool" >/dev/null || { say "$tool is missing (apt-get install cmake nasm)"; exit 1; }
done
# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh
pinned_venv "$VENV" "cargo-lambda==$CARGO_LAMBDA_VERSION" >/dev/null
export PATH=$VENV/bin:$PATH

bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$f"); done
start=$(date +%s)
CARGO_TARGET_DIR=$root/target/cargo-lambda cargo lambda build --release --locked --x86-64 \
    --output-format zip --lambda-dir "$root/target/lambda" -p imgpipe-lambda "${bins[@]}"
say "built in $(($(date +%s) - start)) s"
for f in "${FUNCTIONS[@]}"; do
    zip=target/lambda/$f/bootstrap.zip
    [[ -f $zip ]] || { say "missing $zip"; exit 1; }
    printf '%s\t%s bytes\n' "$zip" "$(stat -c %s "$zip")"
done
