#!/usr/bin/env bash
# Regenerates the HEIF/AVIF test files in worker/tests/fixtures/ from the seed photo
# (tests/fixtures/myphoto.jpg, cropped losslessly to 640×480 so rotation shows). The committed
# copies are what worker/tests/heif.rs reads; nothing here runs at test time.
#
#   scripts/heif-fixtures.sh
#
# Needs Debian's heif-enc (libheif-examples 1.15: x265 for HEIC, aom for AVIF) and jpegtran
# (libjpeg-turbo-progs); what heif-enc cannot write (an `irot` property, a grid item, a lying
# `ispe`) scripts/heif_boxes.py edits into the boxes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/build-deps.sh libheif-examples libjpeg-turbo-progs
out=worker/tests/fixtures
work=$(mktemp -d "${TMPDIR:-/tmp}/heif-fixtures.XXXXXX")
trap 'rm -rf "$work"' EXIT
boxes() { python3 scripts/heif_boxes.py "$@"; }
# Qualities that keep each file under 50 kB and its thumbnail above 35 dB PSNR against the
# JPEG's (HEIC at 50: about 36 dB; aom's AVIF needs 70 for 37 dB).
enc() { heif-enc "$@" >/dev/null; }

# Crops on 16-pixel MCU boundaries, so the JPEG pixels are the seed photo's own.
jpegtran -copy all -crop 640x480+0+80 tests/fixtures/myphoto.jpg >"$work/photo.jpg"
enc -q 50 -o "$out/photo.heic" "$work/photo.jpg"
enc -A -q 70 -o "$out/photo.avif" "$work/photo.jpg"
# irot 1: the stored image turned 90° anticlockwise for display.
boxes irot "$out/photo.heic" "$out/photo_irot90.heic" 1

# A 2×2 grid of 320×240 tiles, each encoded on its own, in row order.
tiles=()
for y in 0 240; do
  for x in 0 320; do
    jpegtran -crop "320x240+$x+$y" "$work/photo.jpg" >"$work/tile_${x}_$y.jpg"
    enc -q 50 -o "$work/tile_${x}_$y.heic" "$work/tile_${x}_$y.jpg"
    tiles+=("$work/tile_${x}_$y.heic")
  done
done
boxes grid "$out/photo_grid.heic" 2 2 "${tiles[@]}"
# A tile's coded image under an `ispe` claiming 100000×100000.
boxes ispe "${tiles[0]}" "$out/huge_ispe.heic" 100000 100000

# Colour described only by `nclx`: Display P3 primaries (12) on the sRGB curve (13), no ICC
# (the code points edited in: heif-enc 1.15 ignores its --colour_primaries for this input).
boxes patches "$work/patches.png"
enc -A -q 90 -o "$work/patches.avif" "$work/patches.png"
boxes nclx "$work/patches.avif" "$out/p3_nclx.avif" 12 13

ls -l "$out"/*.heic "$out"/*.avif
