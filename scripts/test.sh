#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the build and the tests need
# (Debian cmake + nasm for libjpeg-turbo and rav1e, promtool from Debian's prometheus, chromium
# for the dashboard test, moto
# server for the AWS tests, cfn-lint and checkov for the template, hadolint for the Dockerfile; Docker Engine and compose must be
# running or installable), checks formatting and lints, starts the AWS emulator on
# 127.0.0.1, runs every test, stops it; then schemathesis against the live API's own OpenAPI
# description, each fuzz target for 60 s, and the README's run command in a fresh Debian
# container without cmake, nasm or make (`scripts/fresh-machine.sh`). `scripts/lambda-build.sh` (the Lambda zips, ~15 min
# cold) is a separate check.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p worker  # extra arguments go to `cargo test`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# A whole-suite run gains nothing from incremental artifacts and pays for writing them;
# iterate with plain `cargo test` to keep them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
step() { printf '\n== %s\n' "$*" >&2; }

step "system packages"
# prometheus: promtool checks the live /metrics and the alert rules; chromium: the dashboard test.
scripts/build-deps.sh python3-venv prometheus chromium
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "format"
cargo fmt --all -- --check

step "lint"
# The test profile, so the lint shares the C and assembly builds (libjpeg-turbo, libwebp, rav1e,
# aws-lc) with the test build instead of running every build script twice.
cargo clippy --locked --workspace --all-targets --profile test -- -D warnings

step "infrastructure lint (cfn-lint, checkov)"
scripts/infra-lint.sh

step "containers (Docker Engine and a compose tool)"
command -v docker >/dev/null || scripts/build-deps.sh docker.io
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || scripts/build-deps.sh docker-compose
docker info >/dev/null 2>&1 || { echo "the Docker daemon is not reachable (docker info fails): start it" >&2; exit 1; }

step "AWS emulator"
trap 'scripts/moto.sh stop' EXIT
eval "$(scripts/moto.sh start)"
echo "moto server at $IMGPIPE_TEST_AWS_ENDPOINT" >&2

step "tests"
cargo test --locked --workspace "$@"

if [[ $# -eq 0 ]]; then
    step "the live API against its OpenAPI description (schemathesis)"
    scripts/api-check.sh "${CARGO_TARGET_DIR:-target}/debug/imgpipe" 60

    step "fuzzing (60 s a target)"
    scripts/fuzz.sh 60

    step "the README's run command on a fresh machine (debootstrap, no cmake, nasm or make)"
    scripts/fresh-machine.sh
fi
