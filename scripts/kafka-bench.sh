#!/usr/bin/env bash
# Benchmark (not a test): events/s that `streamstats run --until-end` consumes and processes from
# an 8-partition topic at -w 1 and -w 2, next to the rate at which a plain librdkafka consumer
# (examples/kafka_drain.rs: same client library and fetch settings, messages taken in batches like
# the source, no processing) drains the same topic from the same broker: the ceiling. For context
# it also times the same events read from the JSONL file, which shows how much of the time is
# processing rather than Kafka.
#
#   scripts/kafka-bench.sh [EVENTS]        (default 2000000 SPS events, ~200 MB)
#
# Uses the broker of scripts/kafka.sh (started if needed); the topic is created fresh per run.
# Every line reports events/s of the whole process (start-up and exit included), its CPU seconds
# (user + system) and the broker's CPU seconds meanwhile: the broker shares the machine, so CPU
# the job spends per event slows the broker too.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-2000000}"
PARTITIONS=8
mkdir -p .tmp/bench
cargo build --release --quiet --bin streamstats --example kafka_drain
BIN=target/release/streamstats
BROKER="$(scripts/kafka.sh start | tail -n 1)"
DATA=".tmp/bench/sps-$EVENTS.jsonl"
[[ -f "$DATA" ]] || $BIN generate sps --events "$EVENTS" --out "$DATA"
TOPIC="bench-$EVENTS-$(date +%s)"
echo "producing $EVENTS events to $TOPIC ($PARTITIONS partitions) on $BROKER" >&2
$BIN replay "$DATA" --output "kafka://$BROKER/$TOPIC" --partitions "$PARTITIONS"

# CPU seconds the broker's processes (tansu and its object store) have used so far.
KDIR="${STREAMSTATS_KAFKA_DIR:-.tmp/kafka}"
broker_cpu() {
    local ticks=0 pid
    for pid in $(cat "$KDIR/broker.pid" "$KDIR/s3store.pid" 2>/dev/null); do
        [[ -r "/proc/$pid/stat" ]] || continue
        # utime and stime: fields 14 and 15, after the parenthesised command name.
        ticks=$((ticks + $(sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    python3 -c "import sys; print(int(sys.argv[1]) / $(getconf CLK_TCK))" "$ticks"
}

# `measure LABEL COMMAND...`: one result line with events/s, wall and CPU seconds of the
# command, and the CPU seconds the broker spent meanwhile (it shares the cores).
measure() {
    local label="$1" stats broker_before
    shift
    stats="$(mktemp)"
    broker_before="$(broker_cpu)"
    /usr/bin/time -o "$stats" -f "%e %U %S %M" "$@" >&2
    read -r wall user sys rss <"$stats"
    rm -f "$stats"
    results+=("$(python3 -c "import sys; e, w, u, s, m, b0, b1 = sys.argv[1:]
print(f'{int(e) / float(w):>9,.0f} events/s  {float(w):5.2f} s wall  {float(u) + float(s):5.2f} CPU-s  {int(m) // 1024:4d} MiB  broker {float(b1) - float(b0):5.2f} CPU-s')" \
        "$EVENTS" "$wall" "$user" "$sys" "$rss" "$broker_before" "$(broker_cpu)")  $label")
}

results=()
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# The ceiling and the job back to back, per thread/worker count, under the same conditions.
for n in 1 2; do
    measure "plain librdkafka consumer, $n thread(s)" \
        target/release/examples/kafka_drain "$BROKER" "$TOPIC" "$n"
    measure "streamstats run --until-end -w $n" \
        $BIN run dataflows/sps.toml --input "kafka://$BROKER/$TOPIC" \
        --until-end -w "$n" --output /dev/null --dead-letter /dev/null
done
# Context: the same events from the JSONL file (no Kafka): the engine's own processing rate.
for n in 1 2; do
    measure "streamstats run --input FILE -w $n (no Kafka)" \
        $BIN run dataflows/sps.toml --input "$DATA" -w "$n" --output /dev/null --dead-letter /dev/null
done
echo
echo "== $EVENTS events, $(du -h "$DATA" | cut -f1) JSONL, $PARTITIONS partitions, broker $BROKER"
echo "== load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
printf '%s\n' "${results[@]}"
