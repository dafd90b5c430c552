#!/usr/bin/env bash
# Shows that the README's run command works on a fresh machine: a Debian root filesystem made
# with debootstrap (the minimal variant plus what a Rust toolchain itself needs: a C compiler
# and linker, libc headers, CA certificates; curl and git) holds no cmake, nasm or make. The
# container gets this machine's Rust toolchain read-only, an empty CARGO_HOME and a clean clone
# of the repository's HEAD, runs `scripts/run.sh`, which must install what the build needs,
# build and serve, and then the README's walk-through: the seed photo into the original bucket
# and the seed request, which must answer 200 with a JPEG thumbnail written.
#
#   scripts/fresh-machine.sh          # about 15 minutes on 2 cores, most of it the release build
#
# Needs root (debootstrap, docker import) and Docker Engine; reaches only Debian and crates.io.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { echo "fresh-machine.sh: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

scripts/build-deps.sh debootstrap
command -v docker >/dev/null || fail "docker is not installed"
[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root"

stage=$(mktemp -d "${TMPDIR:-/tmp}/imgpipe-fresh.XXXXXX")
image=imgpipe-fresh-machine:$$
container=imgpipe-fresh-machine-$$
cleanup() {
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker rmi "$image" >/dev/null 2>&1 || true
    rm -rf "$stage"
}
trap cleanup EXIT

say "debootstrap (bookworm, minbase)"
start=$SECONDS
debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev,curl,git \
    bookworm "$stage/rootfs" http://deb.debian.org/debian >"$stage/debootstrap.log" 2>&1 ||
    { tail -20 "$stage/debootstrap.log" >&2; fail "debootstrap failed"; }
# The machine's own trust store, so TLS to crates.io works wherever this machine's does.
cp /etc/ssl/certs/ca-certificates.crt "$stage/rootfs/etc/ssl/certs/ca-certificates.crt"
tar -C "$stage/rootfs" -c . | docker import - "$image" >/dev/null
rm -rf "$stage/rootfs"
say "root filesystem imported in $((SECONDS - start)) s"

for tool in cmake nasm make; do
    if docker run --rm "$image" sh -c "command -v $tool" >/dev/null; then
        fail "the fresh machine already has $tool"
    fi
done
say "the fresh machine has no cmake, nasm or make"

git clone --quiet --no-hardlinks "$root" "$stage/src"
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
docker run -d --name "$container" \
    -v "$rustup_home:/opt/rustup:ro" -v "$cargo_bin:/opt/cargo/bin:ro" -v "$stage/src:/src" \
    -e RUSTUP_HOME=/opt/rustup -e CARGO_HOME=/cargo -e RUSTUP_AUTO_INSTALL=0 \
    -e PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -w /src "$image" scripts/run.sh >/dev/null
in_box() { docker exec -w /src "$container" "$@"; }

say "scripts/run.sh: installing, building, serving"
start=$SECONDS
deadline=$((SECONDS + ${IMGPIPE_FRESH_MACHINE_TIMEOUT:-3600}))
until in_box curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$container")" != true ]; then
        docker logs --tail 40 "$container" >&2
        fail "scripts/run.sh exited before serving"
    fi
    [ $SECONDS -lt $deadline ] || { docker logs --tail 40 "$container" >&2; fail "not serving in time"; }
    sleep 5
done
say "serving after $((SECONDS - start)) s"
log=$(docker logs "$container" 2>&1)
grep -q 'installing cmake nasm' <<<"$log" || fail "run.sh did not say it installed cmake and nasm"
for tool in cmake nasm; do in_box sh -c "command -v $tool" >/dev/null || fail "$tool missing after run.sh"; done

in_box cp tests/fixtures/myphoto.jpg data/buckets/original/
response=$(in_box curl -sS -X POST 'http://127.0.0.1:8080/process?wait=30' \
    -d '{"sourceBucket":"original","sourceKey":"myphoto.jpg","destinationBucket":"resized"}')
say "seed request answered: $response"
case $response in
    *'"statusCode":200'*'"destinationKey":"resized/myphoto_thumbnail.jpg"'*) ;;
    *) fail "the seed request did not succeed" ;;
esac
magic=$(in_box sh -c 'head -c 3 data/buckets/resized/resized/myphoto_thumbnail.jpg | od -An -tx1' | tr -d ' \n')
[ "$magic" = ffd8ff ] || fail "resized/myphoto_thumbnail.jpg is not a JPEG (starts with $magic)"
say "PASS: a fresh machine ran the README's run command and served the seed request"
