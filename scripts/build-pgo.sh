#!/usr/bin/env bash
# Builds a profile-guided (PGO) release binary, the way rustc and CPython ship theirs, and prints
# its path. Usage: scripts/build-pgo.sh [WORKDIR]   (default .tmp/pgo)
#
# 1. An instrumented build (target/pgo-gen) runs every dataflow in dataflows/ at -w 1 and -w 2 on
#    generated training inputs. Their seeds (7) differ from the benchmarks' (1), so no benchmark
#    replays its own training data.
# 2. llvm-profdata (rustup's llvm-tools, which must match rustc's LLVM) merges the counts.
# 3. The final build (target/pgo) lays out and inlines code by those counts.
# Both builds are for this machine's CPU (TARGET_CPU, default `native`: AVX2, BMI2, … used
# everywhere instead of behind run-time checks); the binary may not start on an older CPU, and
# TARGET_CPU=x86-64 gives a portable one.
# The output is identical to the plain build's; only the speed differs (README, "Performance").
# Both builds take ~6 minutes on 2 cores (all crates are rebuilt with the profile flags), so the
# result is kept and reused until src/, Cargo.toml, Cargo.lock, this script, TARGET_CPU or rustc
# change.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.tmp/pgo}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=target/pgo/release/streamstats
target_cpu=${TARGET_CPU:-native}
# The stamp: the sources, this script (its training runs), the compiler and the target CPU.
stamp=$( (find src Cargo.toml Cargo.lock scripts/build-pgo.sh -type f | sort | xargs sha256sum; rustc -vV) |
    sha256sum | cut -c1-16)-$target_cpu
if [ -x "$bin" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$bin"
    exit 0
fi

command -v rustup >/dev/null || { echo "build-pgo.sh: needs rustup, for llvm-tools" >&2; exit 1; }
rustup component add llvm-tools >&2
profdata="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
[ -x "$profdata" ] || { echo "build-pgo.sh: no llvm-profdata at $profdata" >&2; exit 1; }

echo "PGO 1/3: instrumented build" >&2
rm -rf "$dir/raw"
RUSTFLAGS="-Cprofile-generate=$dir/raw -Ctarget-cpu=$target_cpu" \
    cargo build --release --quiet --target-dir target/pgo-gen
gen=target/pgo-gen/release/streamstats

echo "PGO 2/3: training runs" >&2
"$gen" generate sps --events 1000000 --seed 7 --out "$dir/sps.jsonl"
"$gen" generate frames --events 150000 --seed 7 --out "$dir/frames.jsonl"
"$gen" generate page-views --events 300000 --seed 7 --out "$dir/page-views.jsonl"
"$gen" generate trades --events 300000 --seed 7 --out "$dir/trades.csv"
"$gen" generate sessions --events 300000 --seed 7 --out "$dir/sessions.jsonl"
sed 's/mode = "exact"/mode = "approx"\nprecision = 14/' dataflows/unique-users.toml > "$dir/unique-users-approx.toml"
for workers in 1 2; do
    for pair in dataflows/sps.toml:sps.jsonl dataflows/unique-users.toml:frames.jsonl \
        "$dir/unique-users-approx.toml":frames.jsonl dataflows/page-views.toml:page-views.jsonl \
        dataflows/stock-moving-average.toml:trades.csv dataflows/sessions.toml:sessions.jsonl; do
        "$gen" run "${pair%%:*}" --input "$dir/${pair##*:}" --output /dev/null --dead-letter /dev/null \
            -w "$workers" 2>>"$dir/training.log"
    done
done
"$profdata" merge -o "$dir/merged.profdata" "$dir/raw"

echo "PGO 3/3: optimized build" >&2
RUSTFLAGS="-Cprofile-use=$dir/merged.profdata -Ctarget-cpu=$target_cpu" \
    cargo build --release --quiet --target-dir target/pgo
echo "$stamp" > "$dir/stamp"
echo "$bin"
