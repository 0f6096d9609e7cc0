#!/usr/bin/env bash
# SPS throughput benchmark (issue 2): generates EVENTS stream-start events (default 10M) and runs
# dataflows/sps.toml over the file with -w 1 and -w 2, reporting events/s, MB/s, CPU seconds,
# peak memory, the -w 2 / -w 1 speed-up and the share of the machine's CPU time the hypervisor
# stole during the run (/proc/stat; this VM's slow phases are steal), for the plain release
# build and the profile-guided one (scripts/build-pgo.sh; BUILDS=plain skips it).
# The host's speed changes from minute to minute, so the runs are repeated ROUNDS times
# (default 3), every build and worker count once per round, and a summary gives the median and
# the best of each: the speed-up is taken within a round, from runs a few seconds apart.
# Usage: scripts/bench.sh [EVENTS] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
dir=${2:-.tmp/bench}
builds=${BUILDS:-plain pgo}
rounds=${ROUNDS:-3}
mkdir -p "$dir"
cargo build --release --quiet
input="$dir/sps-$events.jsonl"
if [ ! -s "$input" ]; then
    echo "generating $events events into $input" >&2
    target/release/streamstats generate sps --events "$events" --seed 1 --disorder-ms 2000 --out "$input"
fi
declare -A binaries=([plain]=target/release/streamstats)
if [[ " $builds " == *" pgo "* ]]; then
    binaries[pgo]=$(scripts/build-pgo.sh)
fi
bytes=$(stat -c %s "$input")
# shellcheck source=scripts/cpu-times.sh
source scripts/cpu-times.sh
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
printf '%-5s %-6s %-8s %14s %10s %10s %12s %10s %8s %7s\n' round build workers events/s MB/s wall_s cpu_s \
    peak_MiB speedup steal
for round in $(seq 1 "$rounds"); do
    for build in $builds; do
        one_worker_wall=
        for workers in 1 2; do
            log="$dir/bench-$build-w$workers.log"
            read -r steal_before total_before < <(cpu_times)
            /usr/bin/time -f 'TIME %e %U %S %M' "${binaries[$build]}" run dataflows/sps.toml \
                --input "$input" --output /dev/null --dead-letter /dev/null -w "$workers" 2>"$log"
            read -r steal_after total_after < <(cpu_times)
            read -r wall user sys rss < <(grep '^TIME' "$log" | cut -d' ' -f2-)
            one_worker_wall=${one_worker_wall:-$wall}
            awk -v round="$round" -v build="$build" -v w="$workers" -v n="$events" -v b="$bytes" \
                -v wall="$wall" -v user="$user" -v sys="$sys" -v rss="$rss" -v base="$one_worker_wall" \
                -v steal=$((steal_after - steal_before)) -v total=$((total_after - total_before)) \
                'BEGIN { printf "%-5s %-6s %-8s %14.0f %10.1f %10.2f %12.2f %10.1f %7.2fx %6.0f%%\n", round,
                    build, w, n / wall, b / wall / 1e6, wall, user + sys, rss / 1024, base / wall,
                    total ? 100 * steal / total : 0 }' | tee -a "$summary"
        done
    done
done
# Per build and worker count: the median and the best events/s, and of the speed-ups.
echo
awk '{ print $2 " -w " $3, $4 }' "$summary" | awk -v unit=" events/s" -f scripts/median-best.awk
awk '$3 == 2 { print $2 " speed-up", $9 + 0 }' "$summary" | awk -v fmt=%.2fx -f scripts/median-best.awk
