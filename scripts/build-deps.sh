#!/usr/bin/env bash
# What building imgpipe needs beyond the Rust toolchain, installed if missing: Debian's
# cmake, make and nasm (libjpeg-turbo and rav1e are built from source with them), g++ and
# pkg-config with libde265 and dav1d (libheif is built from source, against those decoders only,
# for HEIF and AVIF input). Sourced by
# scripts/run.sh and scripts/test.sh; extra package names can be passed (e.g. python3-venv).
#
#   scripts/build-deps.sh [PACKAGE...]
set -euo pipefail
need=()
for tool in cmake nasm make g++ pkg-config; do command -v "$tool" >/dev/null || need+=("$tool"); done
for package in libde265-dev libdav1d-dev "$@"; do
  case "$package" in
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv) ;;
    *) dpkg -s "$package" >/dev/null 2>&1 || need+=("$package") ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2; exit 1; }
  sudo=sudo
fi
echo "installing ${need[*]} (Debian packages the build needs)" >&2
$sudo apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}" >/dev/null
