#!/usr/bin/env bash
# The HEVC and AV1 decoders that libheif links, built as static libraries for the Lambda
# target with the same zig that cargo-lambda cross-links with, so the worker function reads
# HEIC and AVIF without any shared library beside glibc. Sources are Debian's (trixie):
# the upstream tarball and Debian's patches (its security fixes among them), checked against
# pinned SHA-256 sums. Called by scripts/lambda-build.sh; prints the install prefix, whose
# lib/pkgconfig holds libde265.pc and dav1d.pc.
#
#   scripts/lambda-codecs.sh ZIG PREFIX
set -euo pipefail
zig=$1 prefix=$2
pool=http://deb.debian.org/debian/pool/main
MESON_VERSION=1.6.1
say() { echo "lambda-codecs.sh: $*" >&2; }

# name version debian-revision orig-suffix sha256(orig) sha256(debian)
LIBDE265=(libde265 1.0.15 1+deb13u2 tar.gz
    00251986c29d34d3af7117ed05874950c875dd9292d016be29d3b3762666511d
    108b5d4d71243554110e2899e20d3f409c8368573bfddc98473eb1637b902ba9)
DAV1D=(dav1d 1.5.1 1 tar.xz
    401813f1f89fa8fd4295805aa5284d9aed9bc7fc1fdbe554af4292f64cbabe21
    41f758fda3a2d9860691cae422365bae656060f42c9a5375f7ac4124005f4e7e)
stamp="${LIBDE265[1]}-${LIBDE265[2]} ${DAV1D[1]}-${DAV1D[2]}"
if [[ -f $prefix/.built && $(cat "$prefix/.built") == "$stamp" ]]; then
    echo "$prefix"
    exit 0
fi
for tool in cmake ninja nasm curl sha256sum patch; do
    command -v "$tool" >/dev/null || { say "$tool is missing (scripts/build-deps.sh ninja-build)"; exit 1; }
done
# Meson knows zig's linker from 1.6 on (Debian 12 has 1.0): a pinned one from PyPI.
# shellcheck source=scripts/pinned-venv.sh
source "$(dirname "$0")/pinned-venv.sh"
meson=$(pinned_venv "${prefix%/*}/meson-venv" "meson==$MESON_VERSION")/meson

work=$prefix.work
rm -rf "$prefix" "$work"
mkdir -p "$work" "$prefix"
# One compiler for C and C++: zig's clang for cargo-lambda's target (the libc++ it links is
# the one libheif's C++ is built against, in the same link).
cat >"$work/cc" <<EOF
#!/bin/sh
exec "$zig" cc -target x86_64-linux-gnu "\$@"
EOF
cat >"$work/c++" <<EOF
#!/bin/sh
exec "$zig" c++ -target x86_64-linux-gnu "\$@"
EOF
chmod +x "$work/cc" "$work/c++"

# fetch NAME VERSION REVISION SUFFIX SHA_ORIG SHA_DEBIAN → unpacked, patched source dir
fetch() {
    local name=$1 version=$2 revision=$3 suffix=$4 sha_orig=$5 sha_debian=$6
    local dir=$pool/${name:0:1}/$name
    [[ $name == lib* ]] && dir=$pool/${name:0:4}/$name
    local orig=${name}_$version.orig.$suffix debian=${name}_$version-$revision.debian.tar.xz
    curl -fsS -o "$work/$orig" "$dir/$orig"
    curl -fsS -o "$work/$debian" "$dir/$debian"
    echo "$sha_orig  $work/$orig" | sha256sum -c --quiet - >&2
    echo "$sha_debian  $work/$debian" | sha256sum -c --quiet - >&2
    mkdir "$work/$name"
    tar -xf "$work/$orig" -C "$work/$name" --strip-components=1
    tar -xf "$work/$debian" -C "$work/$name"
    if [[ -f $work/$name/debian/patches/series ]]; then
        grep -v '^\s*#' "$work/$name/debian/patches/series" | while read -r p; do
            [[ -n $p ]] && patch -s -d "$work/$name" -p1 <"$work/$name/debian/patches/$p"
        done
    fi
    echo "$work/$name"
}

say "building libde265 ${LIBDE265[1]} (static, for the Lambda target)"
src=$(fetch "${LIBDE265[@]}")
CC=$work/cc CXX=$work/c++ cmake -S "$src" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_SHARED_LIBS=OFF \
    -DENABLE_SDL=OFF -DENABLE_DECODER=OFF -DENABLE_ENCODER=OFF >&2
cmake --build "$src/build" --target install >&2

say "building dav1d ${DAV1D[1]} (static, for the Lambda target)"
src=$(fetch "${DAV1D[@]}")
cat >"$work/cross.ini" <<EOF
[binaries]
c = '$work/cc'
cpp = '$work/c++'
ar = 'ar'
strip = 'strip'
nasm = 'nasm'

[host_machine]
system = 'linux'
cpu_family = 'x86_64'
cpu = 'x86_64'
endian = 'little'
EOF
"$meson" setup "$src/build" "$src" --cross-file "$work/cross.ini" --prefix "$prefix" \
    --libdir lib --buildtype release -Ddefault_library=static -Denable_tools=false \
    -Denable_tests=false -Denable_examples=false >&2
ninja -C "$src/build" install >&2

rm -rf "$work"
echo "$stamp" >"$prefix/.built"
echo "$prefix"
