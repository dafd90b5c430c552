#!/usr/bin/env bash
# Builds the three Lambda functions as zips for provided.al2023 (x86_64) with cargo-lambda,
# which cross-links with zig against an older glibc, so the binaries run on Lambda whatever
# this machine's glibc is. cargo-lambda (with zig) comes from PyPI, pinned, into a venv under
# target/ the first time; Debian's cmake and nasm build the bundled libjpeg-turbo. The worker
# reads HEIC and AVIF: libheif's decoders (libde265, dav1d) are built static for the same
# target first (scripts/lambda-codecs.sh, once; Debian's ninja-build and a pinned meson), so
# each zip holds one binary that needs nothing beside glibc.
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

# cmake, nasm and the rest of the host build's needs; ninja for the codecs.
scripts/build-deps.sh ninja-build unzip binutils
# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh
pinned_venv "$VENV" "cargo-lambda==$CARGO_LAMBDA_VERSION" >/dev/null
export PATH=$VENV/bin:$PATH
# libheif (built by libheif-sys's cmake) finds the decoders, and its pkg-config file resolves
# them at link time, in this prefix only, never the build machine's shared ones.
codecs=$(scripts/lambda-codecs.sh "$VENV/bin/python-zig" "$root/target/lambda-codecs")
export PKG_CONFIG_LIBDIR=$codecs/lib/pkgconfig
# Static archives, asked for as such: zig's linker, unlike GNU ld, does not fall back from a
# missing `.so` to the `.a`.
export SYSTEM_DEPS_LIBHEIF_LINK=static

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
    # Lambda's provided.al2023 has glibc and nothing else we could rely on.
    unzip -p "$zip" bootstrap >"$root/target/lambda/$f/bootstrap.check"
    needed=$(objdump -p "$root/target/lambda/$f/bootstrap.check" | awk '/NEEDED/ {print $2}' |
        grep -Ev '^(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so' || true)
    rm "$root/target/lambda/$f/bootstrap.check"
    [[ -z $needed ]] || { say "$f needs shared libraries Lambda lacks: $needed"; exit 1; }
done
