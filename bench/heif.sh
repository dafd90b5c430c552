#!/usr/bin/env bash
# The engine's HEIC and AVIF rows: the corpus' JPEG photos encoded as HEIC (x265, q50) and AVIF
# (aom, q60) by heif-enc, then thumbnailed to a 512 px box by `imgpipe process` and by
# vipsthumbnail (libvips' heifload, through Debian's libheif 1.15), one core each, in the same
# run. HEIF has no shrink-on-load: the cost is decoding every pixel, so the figure that
# matters is CPU per source megapixel. Prints CPU seconds, ms per MP, the ratio and peak RSS.
#
# Usage: bench/heif.sh [--photos N] [--bin PATH]   (N photos of the corpus, default 12)
# Needs root for apt-get (Debian); results also go to bench/out/heif.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

photos=12 bin=""
while [ $# -gt 0 ]; do
    case $1 in
        --photos) photos=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        *) echo "usage: $0 [--photos N] [--bin PATH]" >&2; exit 2 ;;
    esac
done

need=()
for pkg in libvips-tools libheif-examples time; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null
fi
bash ../shared/corpus/build.sh bench/out/corpus >/dev/null
if [ -z "$bin" ]; then
    scripts/build-deps.sh
    cargo build --release --locked --bin imgpipe -q
    bin=${CARGO_TARGET_DIR:-$root/target}/release/imgpipe
fi

work=bench/out/heif
mkdir -p "$work/src"
# The first N JPEG photos of the manifest, each encoded once (kept between runs).
mapfile -t jpegs < <(awk -F'\t' 'NR > 1 && $6 == "JPEG" && $5 == "photo" { print $1 }' bench/out/corpus/manifest.tsv |
    head -n "$photos")
for f in "${jpegs[@]}"; do
    stem=${f%.jpg}
    [ -s "$work/src/$stem.heic" ] || heif-enc -q 50 -o "$work/src/$stem.heic" "bench/out/corpus/$f" >/dev/null
    [ -s "$work/src/$stem.avif" ] || heif-enc -A -q 60 -o "$work/src/$stem.avif" "bench/out/corpus/$f" >/dev/null
done

# CPU seconds (user + system) and peak RSS (MB) of one batch on core 1.
measure() {
    local out
    out=$(mktemp)
    VIPS_CONCURRENCY=1 /usr/bin/time -f '%U %S %M' -o "$out" taskset -c 1 "$@" >/dev/null 2>&1 ||
        { echo "failed: $*" >&2; cat "$out" >&2; exit 1; }
    awk 'END { printf "%.3f %.0f\n", $1 + $2, $3 / 1024 }' "$out"
    rm -f "$out"
}

mp=$(for f in "${jpegs[@]}"; do awk -F'\t' -v f="$f" '$1 == f { print $10 }' bench/out/corpus/manifest.tsv; done |
    awk '{ s += $1 } END { printf "%.2f", s }')
report=bench/out/heif.md
{
    echo "# HEIF input, $(date -u +%F), $(nproc) cores, ${#jpegs[@]} photos, $mp MP; 512 px box, JPEG q80, one core"
    echo
    echo "| input | imgpipe CPU s | ms/MP | RSS MB | vipsthumbnail CPU s | ms/MP | RSS MB | speed ratio |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$report"
for ext in heic avif; do
    files=()
    for f in "${jpegs[@]}"; do files+=("$work/src/${f%.jpg}.$ext"); done
    rm -rf "$work/out" && mkdir -p "$work/out"
    # Best of three for each tool, alternating.
    best_i="" best_v=""
    for _ in 1 2 3; do
        read -r cpu rss < <(measure "$bin" process "${files[@]}" --out "$work/out" --width 512 --height 512 --quiet)
        if [ -z "$best_i" ] || awk -v a="$cpu" -v b="${best_i% *}" 'BEGIN { exit !(a < b) }'; then best_i="$cpu $rss"; fi
        read -r cpu rss < <(measure vipsthumbnail -s '512x512>' -o "$PWD/$work/out/%s_v.jpg[Q=80,strip]" "${files[@]}")
        if [ -z "$best_v" ] || awk -v a="$cpu" -v b="${best_v% *}" 'BEGIN { exit !(a < b) }'; then best_v="$cpu $rss"; fi
    done
    n=$(find "$work/out" -name '*_thumbnail.jpg' | wc -l)
    [ "$n" -eq "${#files[@]}" ] || { echo "imgpipe wrote $n of ${#files[@]} thumbnails" >&2; exit 1; }
    awk -v ext="$ext" -v mp="$mp" -v i="$best_i" -v v="$best_v" 'BEGIN {
        split(i, a, " "); split(v, b, " ")
        printf "| %s | %.2f | %.1f | %d | %.2f | %.1f | %d | %.2fx |\n", ext, a[1], 1000 * a[1] / mp, a[2],
            b[1], 1000 * b[1] / mp, b[2], b[1] / a[1]
    }' >>"$report"
done
cat "$report"
