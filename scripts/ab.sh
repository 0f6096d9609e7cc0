#!/usr/bin/env bash
# A/B comparison of two streamstats binaries on a machine whose speed drifts (this VM's slow
# phases are hypervisor steal): runs them in alternating pairs, A then B, with the same
# arguments, so that both meet the same phases. Prints each run's wall time, CPU time and the
# share of the machine's CPU time stolen during it (/proc/stat), then per binary the mean wall
# and CPU time, and in how many pairs B took less wall time and less CPU time than A.
# Usage: scripts/ab.sh [-n PAIRS] BINARY_A BINARY_B -- ARGS...   (PAIRS defaults to 6)
# Example: scripts/ab.sh target/release/streamstats target/pgo/release/streamstats -- \
#            run dataflows/sps.toml --input .tmp/bench/sps-10000000.jsonl --output /dev/null \
#            --dead-letter /dev/null -w 1
set -euo pipefail
pairs=6
if [ "${1:-}" = "-n" ]; then
    pairs=$2
    shift 2
fi
if [ $# -lt 3 ] || [ "$3" != "--" ]; then
    echo "usage: scripts/ab.sh [-n PAIRS] BINARY_A BINARY_B -- ARGS..." >&2
    exit 2
fi
declare -A binaries=([A]=$1 [B]=$2)
shift 3
for name in A B; do
    if [ ! -x "${binaries[$name]}" ]; then
        echo "scripts/ab.sh: binary $name (${binaries[$name]}) is not an executable file" >&2
        exit 2
    fi
done
# shellcheck source=scripts/cpu-times.sh
source "$(dirname "$0")/cpu-times.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
results=()
printf '%-5s %-3s %8s %8s %7s\n' pair bin wall_s cpu_s steal
for pair in $(seq 1 "$pairs"); do
    for name in A B; do
        read -r steal_before total_before < <(cpu_times)
        if ! /usr/bin/time -f 'TIME %e %U %S' -o "$log" "${binaries[$name]}" "$@" >/dev/null 2>&1; then
            echo "scripts/ab.sh: binary $name failed; rerun by hand to see why: ${binaries[$name]} $*" >&2
            exit 1
        fi
        read -r steal_after total_after < <(cpu_times)
        read -r wall user sys < <(grep '^TIME' "$log" | cut -d' ' -f2-)
        row=$(awk -v p="$pair" -v n="$name" -v wall="$wall" -v user="$user" -v sys="$sys" \
            -v steal=$((steal_after - steal_before)) -v total=$((total_after - total_before)) \
            'BEGIN { printf "%-5s %-3s %8.2f %8.2f %6.0f%%", p, n, wall, user + sys,
                     total ? 100 * steal / total : 0 }')
        echo "$row"
        results+=("$row")
    done
done
printf '%s\n' "${results[@]}" | awk '
    { wall[$2] += $3; cpu[$2] += $4; if ($2 == "A") { a_wall = $3; a_cpu = $4 }
      else { faster_wall += ($3 < a_wall); faster_cpu += ($4 < a_cpu); n++ } }
    END {
        printf "mean wall A %.2f s, B %.2f s (%+.1f %%); mean CPU A %.2f s, B %.2f s (%+.1f %%)\n",
            wall["A"] / n, wall["B"] / n, 100 * (wall["B"] / wall["A"] - 1),
            cpu["A"] / n, cpu["B"] / n, 100 * (cpu["B"] / cpu["A"] - 1)
        printf "B took less wall time in %d of %d pairs, less CPU time in %d of %d\n",
            faster_wall, n, faster_cpu, n
    }'
