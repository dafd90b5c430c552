#!/usr/bin/env bash
# Benchmarks `imgpipe process` against libvips (vipsthumbnail, pyvips), Pillow and the
# libjpeg-turbo decode floor on the shared real-photo corpus: one core, one process per batch,
# longest edge 128/512/1600, JPEG q80. Prints throughput, ratios, peak RSS and PSNR.
#
# Usage: bench/run.sh [--quick] [--repeat N] [--sizes 128,512,1600]
#   --quick   512 px only, one run per tool (a couple of minutes)
# Needs root for apt-get (Debian), PyPI for the venv; results also go to bench/out/results.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need=()
for pkg in libvips-tools libjpeg-turbo-progs time python3-venv cmake nasm; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null
fi

venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check Pillow pyvips pyvips-binary numpy

bash ../shared/corpus/build.sh bench/out/corpus >/dev/null
cargo build --release --bin imgpipe -q

exec "$venv/bin/python" bench/harness.py --corpus bench/out/corpus --imgpipe "${CARGO_TARGET_DIR:-target}/release/imgpipe" "$@"
