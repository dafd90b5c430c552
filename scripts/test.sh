#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the build and the tests need
# (Debian cmake + nasm for libjpeg-turbo and rav1e, moto server for the AWS tests, cfn-lint
# and checkov for the template), checks formatting and lints, starts the AWS emulator on
# 127.0.0.1, runs every test, stops it. `scripts/lambda-build.sh` (the Lambda zips, ~15 min
# cold) is a separate check.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p worker  # extra arguments go to `cargo test`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*" >&2; }

step "system packages"
need=()
for tool in cmake nasm; do command -v "$tool" >/dev/null || need+=("$tool"); done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "infrastructure lint (cfn-lint, checkov)"
scripts/infra-lint.sh

step "AWS emulator"
trap 'scripts/moto.sh stop' EXIT
eval "$(scripts/moto.sh start)"
echo "moto server at $IMGPIPE_TEST_AWS_ENDPOINT" >&2

step "tests"
cargo test --locked --workspace "$@"
