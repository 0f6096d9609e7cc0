#!/usr/bin/env bash
# Benchmark (not a test) of unique users over ~2 KB Tamedia-shaped frames.
#
# Usage: scripts/bench-frames.sh [FRAMES] [WORKDIR]     (defaults: 1000000, /tmp/streamstats-bench)
#
# Prints: parse-only throughput of the scanner and of serde_json (examples/extract_throughput.rs,
# first 200,000 frames, thread CPU time); full runs of dataflows/unique-users.toml (six windows,
# exact) at -w 1 and -w 2 with frames/s and MB/s per worker by wall clock AND by CPU time (user +
# sys, which stays meaningful on a loaded machine), peak RSS from /usr/bin/time -v, the parser's
# share of the CPU time; then exact vs approximate (precision 10..16) peak RSS and observed error
# of the 1-minute counts against the exact run. The full exact runs are repeated with the
# profile-guided build of scripts/build-pgo.sh (BUILDS=plain skips it). The host's speed changes
# from minute to minute, so the full exact runs are repeated ROUNDS times (default 3) and a
# summary gives the median and the best frames/s per worker of each.
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${1:-1000000}
DIR=${2:-/tmp/streamstats-bench}
BIN=target/release/streamstats
BUILDS=${BUILDS:-plain pgo}
ROUNDS=${ROUNDS:-3}
mkdir -p "$DIR"
cargo build --release --bin streamstats --example extract_throughput >&2

INPUT="$DIR/frames-$FRAMES.jsonl"
if [ ! -s "$INPUT" ]; then
  "$BIN" generate frames --events "$FRAMES" --rate 1000 --seed 1 --out "$INPUT"
fi
BYTES=$(stat -c %s "$INPUT")
echo "input: $INPUT, $FRAMES frames, $((BYTES / 1000000)) MB, $((BYTES / FRAMES)) bytes per frame"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

echo
echo "## Parse only (first 200000 frames, CPU time of one thread)"
head -n 200000 "$INPUT" > "$DIR/parse-sample.jsonl"
target/release/examples/extract_throughput "$DIR/parse-sample.jsonl" | tee "$DIR/parse.txt"
PARSE_NS=$(awk '/^scanner/ { for (i = 1; i <= NF; i++) if ($i == "ns/line") print $(i - 1) }' "$DIR/parse.txt")

# shellcheck source=scripts/cpu-times.sh
source scripts/cpu-times.sh

# run NAME DATAFLOW WORKERS [BINARY]: runs the dataflow under /usr/bin/time -v and prints one
# table row.
run() {
  local name=$1 flow=$2 workers=$3 bin=${4:-$BIN} steal_before total_before steal_after total_after
  read -r steal_before total_before < <(cpu_times)
  /usr/bin/time -v "$bin" run "$flow" --input "$INPUT" --output "$DIR/$name.jsonl" \
    --dead-letter "$DIR/$name.dead.jsonl" -w "$workers" 2> "$DIR/$name.time" >/dev/null
  read -r steal_after total_after < <(cpu_times)
  awk -v name="$name" -v frames="$FRAMES" -v bytes="$BYTES" -v w="$workers" -v parse="$PARSE_NS" \
    -v steal=$((steal_after - steal_before)) -v total=$((total_after - total_before)) \
    -v plain="$([ "$bin" = "$BIN" ] && echo 1 || echo 0)" '
    /Elapsed \(wall clock\)/ { n = split($NF, t, ":"); wall = (n == 3) ? t[1] * 3600 + t[2] * 60 + t[3] : t[1] * 60 + t[2] }
    /User time/ { user = $NF } /System time/ { sys = $NF } /Maximum resident/ { rss = $NF }
    END {
      cpu = user + sys
      printf "%-14s -w %d  wall %6.2fs %9.0f frames/s/worker %6.0f MB/s/worker | cpu %6.2fs %9.0f frames/cpu-s %6.0f MB/cpu-s | peak RSS %5.0f MB | steal %3.0f%% | parser share %s\n",
        name, w, wall, frames / wall / w, bytes / wall / w / 1e6, cpu, frames / cpu, bytes / cpu / 1e6, rss / 1024,
        total ? 100 * steal / total : 0,
        plain ? sprintf("%3.0f%%", 100 * parse * frames / 1e9 / cpu) : "(parse-only run is the plain build)"
    }' "$DIR/$name.time"
}

echo
echo "## Full runs: dataflows/unique-users.toml (1m, 1h, 1d, week, month, year; exact), $ROUNDS rounds"
WITH_PGO=false
if [[ " $BUILDS " == *" pgo "* ]]; then
  WITH_PGO=true
  PGO_BIN=$(scripts/build-pgo.sh)
fi
full_runs=$(mktemp)
trap 'rm -f "$full_runs"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  {
    run exact-w1 dataflows/unique-users.toml 1
    run exact-w2 dataflows/unique-users.toml 2
    if $WITH_PGO; then
      run exact-w1-pgo dataflows/unique-users.toml 1 "$PGO_BIN"
      run exact-w2-pgo dataflows/unique-users.toml 2 "$PGO_BIN"
    fi
  } | tee -a "$full_runs"
  if $WITH_PGO; then
    for w in 1 2; do
      if ! cmp -s <(sort "$DIR/exact-w$w.jsonl") <(sort "$DIR/exact-w$w-pgo.jsonl"); then
        echo "-w $w: the profile-guided build's rows DIFFER from the plain build's" >&2
        exit 1
      fi
    done
    echo "round $round: the profile-guided build's rows equal the plain build's at -w 1 and -w 2"
  fi
done
# Per run name: the median and the best frames/s per worker (wall clock) over the rounds.
awk '{ print $1, $6 }' "$full_runs" | awk -v unit=" frames/s per worker" -f scripts/median-best.awk

echo
echo "## Exact vs approximate (-w 1): peak RSS and observed error of the 1m windows"
for p in 10 11 12 13 14 15 16; do
  sed "s/mode = \"exact\"/mode = \"approx\"\nprecision = $p/" dataflows/unique-users.toml > "$DIR/approx-$p.toml"
  run "approx-p$p" "$DIR/approx-$p.toml" 1
done
python3 - "$DIR" <<'PY'
import json, math, sys
d = sys.argv[1]
def rows(name):
    with open(f"{d}/{name}.jsonl") as f:
        return {(r["window"], r["window_start"]): r for r in map(json.loads, f)}
def rss(name):
    for line in open(f"{d}/{name}.time"):
        if "Maximum resident" in line:
            return int(line.split()[-1]) / 1024
exact = rows("exact-w1")
print(f"{'mode':<10} {'registers':>9} {'RSE':>7} {'1m windows':>10} {'mean |err|':>10} {'max |err|':>9} {'peak RSS':>9}")
print(f"{'exact':<10} {'-':>9} {'0':>7} {sum(k[0] == '1m' for k in exact):>10} {'0':>10} {'0':>9} {rss('exact-w1'):>7.0f}MB")
for p in range(10, 17):
    got = rows(f"approx-p{p}")
    errors = [abs(got[k]["unique_users"] - r["unique_users"]) / r["unique_users"]
              for k, r in exact.items() if k[0] == "1m"]
    print(f"approx p{p:<3} {2**p:>9} {1.04 / math.sqrt(2**p):>7.2%} {len(errors):>10} "
          f"{sum(errors) / len(errors):>10.2%} {max(errors):>9.2%} {rss(f'approx-p{p}'):>7.0f}MB")
PY
