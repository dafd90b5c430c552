#!/usr/bin/env bash
# Benchmarks `imgpipe process` against libvips (vipsthumbnail, pyvips), Pillow and the
# libjpeg-turbo decode floor on the shared real-photo corpus: one core, one process per batch,
# longest edge 128/512/1600, JPEG q80. Prints throughput, ratios, peak RSS and PSNR, then the
# HEIC and AVIF rows against vipsthumbnail's heifload (bench/heif.sh).
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

bin=${CARGO_TARGET_DIR:-target}/release/imgpipe
"$venv/bin/python" bench/harness.py --corpus bench/out/corpus --imgpipe "$bin" "$@"

# The HEIF row: HEIC and AVIF decode cost per source MP against libvips' heifload, on corpus
# photos encoded by heif-enc (bench/heif.sh; 4 photos with --quick, else 12).
photos=12
for arg in "$@"; do [ "$arg" = --quick ] && photos=4; done
bench/heif.sh --photos "$photos" --bin "$bin" >/dev/null
{ echo; cat bench/out/heif.md; } | tee -a bench/out/results.md
