#!/usr/bin/env bash
# The README's run command: installs what the build needs (scripts/build-deps.sh), then
# builds and runs `imgpipe serve` (API on 127.0.0.1:8080, data in ./data). Arguments go
# to `imgpipe serve`, e.g. `scripts/run.sh --workers 4`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/build-deps.sh
exec cargo run --locked --release -- serve "$@"
