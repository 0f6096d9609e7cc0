#!/usr/bin/env python3
"""Independent reference for tumbling-window dataflows (count aggregates), from the documented
semantics only: README "How lateness works" and the `//!` contracts of sources/file.rs and
watermark.rs. Standard library only; shares no code with the engine.

usage: windowed_reference.py DATAFLOW.toml INPUT.jsonl CHUNK_BYTES ROWS_OUT DEAD_OUT

Writes the expected result rows (JSON lines, any order) and the expected dead letters as
`reason partition offset` lines.
"""
import json
import os
import sys
import tomllib

REFERENCE_RECORDS = 8
REFERENCE_BYTES = 1 << 20
UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000, "d": 86400000, "w": 604800000}


def duration_ms(text):
    text = text.strip()
    digits = "".join(c for c in text if c.isdigit())
    unit = text[len(digits):].strip()
    return int(digits) * UNITS_MS.get(unit or "ms")


class Malformed(Exception):
    pass


def reject_constant(name):
    raise ValueError("NaN and Infinity are not JSON")


def parse(line, time_field, unit):
    """Returns (record, ts) or raises Malformed."""
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise Malformed()
    if not isinstance(record, dict):
        raise Malformed()
    value = record.get(time_field)
    if unit in ("ms", "s"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**63 - 1:
            raise Malformed()
        return record, value * (1000 if unit == "s" else 1)
    raise SystemExit("unit not supported by this reference: " + unit)


def text_of(value):
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None or isinstance(value, (dict, list)):
        return "null"
    return json.dumps(value)


def chunk_lines(data, chunk_size):
    """Yields (chunk_index, [(offset, line_bytes)]) with a line in the chunk of its first byte."""
    chunks = {}
    offset = 0
    for raw in data.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        chunks.setdefault(offset // chunk_size, []).append((offset, line, len(raw) + 1))
        offset += len(raw) + 1
    return sorted(chunks.items())


def main():
    spec_path, input_path, chunk_size, rows_out, dead_out = sys.argv[1:6]
    chunk_size = int(chunk_size)
    spec = tomllib.load(open(spec_path, "rb"))
    t = spec["time"]
    field, unit = t["field"], t["unit"]
    bound = duration_ms(t["max_out_of_orderness"])
    max_future = duration_ms(t.get("max_future", "1h"))
    confirmations = t.get("future_confirmations", 3)
    filters = {k: [text_of(x) for x in (v if isinstance(v, list) else [v])] for k, v in spec.get("filter", {}).items()}
    group_by = spec.get("group_by", [])
    (window,) = spec["windows"]
    assert window["type"] == "tumbling"
    size = duration_ms(window["size"])
    names = [a["name"] for a in spec["aggregates"]]
    assert all(a["fn"] == "count" for a in spec["aggregates"])

    data = open(input_path, "rb").read()
    if data.endswith(b"\n"):
        data = data[:-1]
    counts = {}
    dead = []
    name = os.path.basename(input_path)

    def passes(record):
        return all(k in record and text_of(record[k]) in vs for k, vs in filters.items())

    def accept(record, ts, partition, offset):
        if not passes(record):
            return
        if any(g not in record for g in group_by):
            dead.append(("malformed", partition, offset))
            return
        key = tuple(json.dumps(record[g], sort_keys=True) for g in group_by)
        start = ts - ts % size
        counts[(start, key)] = counts.get((start, key), 0) + 1

    for index, lines in chunk_lines(data, chunk_size):
        partition = f"{name}#{index}"
        # Reference: minimum of the first 8 valid event times within the first 1 MiB of the chunk.
        times, read = [], 0
        for offset, line, n in lines:
            if read >= REFERENCE_BYTES or len(times) >= REFERENCE_RECORDS:
                break
            read += n
            if line.strip() == b"":
                continue
            try:
                times.append(parse(line, field, unit)[1])
            except Malformed:
                pass
        top = min(times) if times else None
        held = []
        for offset, line, n in lines:
            if line.strip() == b"":
                continue
            try:
                record, ts = parse(line, field, unit)
            except Malformed:
                dead.append(("malformed", partition, offset))
                continue
            if top is None:
                top = ts
                accept(record, ts, partition, offset)
                continue
            if ts > top + max_future:
                if held and abs(ts - held[0][1]) > max_future:
                    dead.extend(("future", partition, o) for (_, _, o) in held)
                    held = []
                held.append((record, ts, offset))
                if len(held) >= confirmations:
                    top = max(h[1] for h in held)
                    for r, hts, o in held:
                        accept(r, hts, partition, o)
                    held = []
                continue
            if held:
                dead.extend(("future", partition, o) for (_, _, o) in held)
                held = []
            if ts < top - bound:
                if passes(record):
                    dead.append(("late", partition, offset))
            else:
                top = max(top, ts)
                accept(record, ts, partition, offset)
        dead.extend(("future", partition, o) for (_, _, o) in held)

    with open(rows_out, "w") as out:
        for (start, key), count in counts.items():
            row = {"window_start": start, "window_end": start + size}
            for g, v in zip(group_by, key):
                row[g] = json.loads(v)
            for n in names:
                row[n] = count
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(dead_out, "w") as out:
        for reason, partition, offset in dead:
            out.write(f"{reason} {partition} {offset}\n")


if __name__ == "__main__":
    main()
