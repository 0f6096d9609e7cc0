#!/usr/bin/env bash
# Benchmark (not a test): events/s that `streamstats run --until-end` consumes and processes from
# an 8-partition topic at -w 1 and -w 2, next to the rate at which a plain librdkafka consumer
# (examples/kafka_drain.rs: same client library and fetch settings, no processing) drains the
# same topic from the same broker: the ceiling. For context it also times the same events read
# from the JSONL file, which shows how much of the time is processing rather than Kafka.
#
#   scripts/kafka-bench.sh [EVENTS]        (default 2000000 SPS events, ~200 MB)
#
# Uses the broker of scripts/kafka.sh (started if needed); the topic is created fresh per run.
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

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{$EVENTS / ($2 - $1):.0f}')" -- "$1" "$2"; }

results=()
for threads in 1 2; do
    t0=$(now)
    target/release/examples/kafka_drain "$BROKER" "$TOPIC" "$threads" >&2
    t1=$(now)
    results+=("plain librdkafka consumer, $threads thread(s): $(rate "$t0" "$t1") events/s")
done
for workers in 1 2; do
    t0=$(now)
    /usr/bin/time -f "peak RSS %M KiB" $BIN run dataflows/sps.toml --input "kafka://$BROKER/$TOPIC" \
        --until-end -w "$workers" --output /dev/null --dead-letter /dev/null
    t1=$(now)
    results+=("streamstats run --until-end -w $workers: $(rate "$t0" "$t1") events/s")
done
# Context: the same events from the JSONL file (no Kafka): the engine's own processing rate.
for workers in 1 2; do
    t0=$(now)
    $BIN run dataflows/sps.toml --input "$DATA" -w "$workers" --output /dev/null --dead-letter /dev/null
    t1=$(now)
    results+=("streamstats run --input FILE -w $workers (no Kafka): $(rate "$t0" "$t1") events/s")
done
echo
echo "== $EVENTS events, $(du -h "$DATA" | cut -f1) JSONL, $PARTITIONS partitions, broker $BROKER"
printf '%s\n' "${results[@]}"
