#!/usr/bin/env python3
"""Independent reference for session windows (Python 3 stdlib only; shares no code with streamstats).

Usage: sessions_reference.py INPUT.jsonl --gap-ms 60000 --bound-ms 10000 [--max-future-ms 3600000]

Reads heartbeats (one JSON object per line, one input partition), decides lateness the way the
dataflow contract states it (a record is late iff its time is below the partition's maximum so far
minus the bound; the maximum starts at the minimum of the first 8 valid event times), and prints
one canonical JSON row per session (keys sorted, compact), sorted. Sessions per `session_id`:
events closer than the gap are one session; a silence of exactly the gap splits. Carried fields
come from the earliest event (ties: smallest JSON text). Statistics go to stderr as JSON:
sessions, keys split into several sessions, bridging merges seen in arrival order, late records.
"""
import argparse
import json
import sys

CARRIED = ("user_id", "program_id", "device")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--gap-ms", type=int, required=True)
    ap.add_argument("--bound-ms", type=int, required=True)
    ap.add_argument("--max-future-ms", type=int, default=3_600_000)
    args = ap.parse_args()

    records = []
    with open(args.input, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            try:
                obj = json.loads(line)
            except ValueError:
                records.append(None)
                continue
            if not isinstance(obj, dict):
                records.append(None)
                continue
            t = obj.get("time")
            if not isinstance(t, int) or isinstance(t, bool) or t < 0:
                records.append(None)
                continue
            records.append(obj)

    valid_times = [r["time"] for r in records if r is not None]
    reference = min(valid_times[:8]) if valid_times else None

    high = reference
    late = 0
    on_time = []
    for r in records:
        if r is None:
            continue
        t = r["time"]
        if high is None:
            high = t
        elif t > high + args.max_future_ms:
            sys.exit("reference does not model the bitflip guard: generate without bitflips")
        elif t < high - args.bound_ms:
            late += 1
            continue
        else:
            high = max(high, t)
        if "session_id" not in r:
            continue  # missing group-by field: dead letter
        on_time.append(r)

    # Bridging merges, counted in arrival order with a naive interval list per key.
    gap = args.gap_ms
    open_sessions = {}
    bridges = 0
    for r in on_time:
        key, t = json.dumps(r["session_id"]), r["time"]
        sessions = open_sessions.setdefault(key, [])
        touching = [s for s in sessions if s[0] - gap < t < s[1] + gap]
        if len(touching) > 1:
            bridges += 1
        lo = min([t] + [s[0] for s in touching])
        hi = max([t] + [s[1] for s in touching])
        sessions[:] = [s for s in sessions if s not in touching] + [(lo, hi)]

    # The sessions themselves: sort each key's events and cut at silences >= gap.
    by_key = {}
    for r in on_time:
        by_key.setdefault(json.dumps(r["session_id"]), []).append(r)
    rows = []
    split_keys = 0
    for key, events in by_key.items():
        events.sort(key=lambda r: r["time"])
        groups = [[events[0]]]
        for e in events[1:]:
            if e["time"] - groups[-1][-1]["time"] >= gap:
                groups.append([e])
            else:
                groups[-1].append(e)
        if len(groups) > 1:
            split_keys += 1
        for g in groups:
            start, end = g[0]["time"], g[-1]["time"]
            row = {
                "session_id": g[0]["session_id"],
                "start_time": start,
                "end_time": end,
                "stream_duration_ms": end - start,
                "events": len(g),
            }
            for field in CARRIED:
                first = min(
                    (e["time"], json.dumps(e.get(field), separators=(",", ":")))
                    for e in g
                )
                row[field] = json.loads(first[1])
            rows.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
    rows.sort()
    sys.stdout.write("".join(r + "\n" for r in rows))
    json.dump(
        {"sessions": len(rows), "split_keys": split_keys, "bridges": bridges, "late": late},
        sys.stderr,
    )
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
