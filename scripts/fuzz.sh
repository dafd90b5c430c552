#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ for a fixed budget each, with libFuzzer through cargo-fuzz:
#   decode   arbitrary bytes through the image engine (sniff, probe, limits, decoders, resize, encode)
#   request  arbitrary bodies through POST /process's checks, and the promises made on what passes
# A crash, a panic, an input that runs past 10 s or 2 GiB fails the run and leaves the input
# under fuzz/artifacts/<target>/ (replay: scripts/fuzz.sh --replay FILE TARGET).
#
# cargo-fuzz is installed (pinned) under target/tools on first use. It instruments the build
# with flags rustc keeps for nightly; RUSTC_BOOTSTRAP=1 lets the one stable toolchain take them,
# for this build only (fuzz/ is its own workspace with its own target dir). No sanitizer: the
# engine is safe Rust over C codecs that are not instrumented anyway, and the build stays half
# as long; panics, aborts, hangs and memory blow-ups are what is looked for.
#
#   scripts/fuzz.sh                  # both targets, 60 s each (the test command's budget)
#   scripts/fuzz.sh 600 decode       # one target for longer
#   scripts/fuzz.sh --replay FILE decode
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CARGO_FUZZ_VERSION=0.13.1
tools=${CARGO_TARGET_DIR:-$root/target}/tools
say() { echo "fuzz.sh: $*" >&2; }

if [[ ! -x $tools/bin/cargo-fuzz ]] || [[ $("$tools/bin/cargo-fuzz" --version) != *"$CARGO_FUZZ_VERSION"* ]]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
    cargo install --quiet --locked --root "$tools" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH=$tools/bin:$PATH RUSTC_BOOTSTRAP=1
# The fuzz workspace builds on its own; a CARGO_TARGET_DIR shared with the main workspace would
# be rebuilt back and forth between the two sets of flags.
unset CARGO_TARGET_DIR
fuzz() { (cd fuzz && cargo fuzz "$@"); }
flags=(--sanitizer none --release --debug-assertions)

if [[ ${1:-} == --replay ]]; then
    fuzz run "${flags[@]}" "$3" "$(realpath "$2")"
    exit
fi

budget=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(decode request)

# Seed corpora: the engine's own test images, and a few requests.
mkdir -p fuzz/corpus/decode fuzz/corpus/request
find worker/tests/fixtures -maxdepth 1 -type f -size -256k -exec cp -n {} fuzz/corpus/decode/ \;
cp -n fuzz/seeds/request/* fuzz/corpus/request/

for target in "${targets[@]}"; do
    say "$target for ${budget}s"
    fuzz run "${flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|Done|ERROR|panicked|SUMMARY|Test unit written' >&2
    say "$target: no crash in ${budget}s"
done
