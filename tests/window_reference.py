#!/usr/bin/env python3
"""Independent reference for windowed aggregates: brute force, standard library only.

Usage: window_reference.py CONFIG_JSON  (prints result rows as JSON lines, then on stderr the
number of records it rejects as malformed). CONFIG_JSON keys: input, format ("csv"/"jsonl"),
columns, trim, time (epoch-ms field), group_by, size, slide (ms), aggregates ([name, fn, field]),
required, derive ({target: [source, "url_path" | "query:NAME"]}).

Each record is put in every window [s, s + size) with s a multiple of slide and s <= ts < s + size,
by enumeration; sums use exact decimals. No lateness: the test data has none.
"""
import csv
import json
import sys
from decimal import Decimal, ROUND_HALF_EVEN
from urllib.parse import urlsplit, parse_qs


def records(cfg):
    with open(cfg["input"], encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            if cfg["format"] == "csv":
                row = next(csv.reader([line]))
                if len(row) != len(cfg["columns"]):
                    yield None
                    continue
                if cfg.get("trim"):
                    row = [v.strip() for v in row]
                yield {c: (v if v != "" else None) for c, v in zip(cfg["columns"], row)}
            else:
                try:
                    obj = json.loads(line, parse_float=Decimal)
                except ValueError:
                    yield None
                    continue
                yield obj if isinstance(obj, dict) else None


def number(value):
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        if value.strip() == "":
            return None
        return Decimal(value.strip())
    return Decimal(value)


def derive(record, cfg):
    for target, (source, how) in sorted(cfg.get("derive", {}).items()):
        url = record.get(source)
        if url is None:
            record.pop(target, None)
            continue
        parts = urlsplit(url)  # raises ValueError on a broken URL
        if not parts.scheme and not url.startswith("/"):
            raise ValueError
        if how == "url_path":
            record[target] = parts.path or "/"
        else:
            values = parse_qs(parts.query).get(how[len("query:"):])
            record[target] = values[0] if values else None


def distinct_text(value):
    """The text a distinct count compares: strings as they are, anything else as JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def main():
    cfg = json.loads(sys.argv[1])
    size, slide = cfg["size"], cfg["slide"]
    windows = {}
    malformed = 0
    for record in records(cfg):
        try:
            if record is None:
                raise ValueError
            derive(record, cfg)
            ts = int(record[cfg["time"]])
            if any(record.get(f) is None for f in cfg.get("required", [])):
                raise ValueError
            if any(g not in record for g in cfg["group_by"]):
                raise ValueError
            values = [None if fn == "count"
                      else distinct_text(record.get(field)) if fn == "count_distinct"
                      else number(record.get(field))
                      for _, fn, field in cfg["aggregates"]]
            if any(hasattr(v, "is_finite") and not v.is_finite() for v in values):
                raise ValueError
        except (ValueError, KeyError, TypeError, ArithmeticError):
            malformed += 1
            continue
        key = tuple(json.dumps(record[g]) for g in cfg["group_by"])
        start = 0
        first = max(0, (ts - size) // slide * slide)
        for start in range(first, ts + 1, slide):
            if start <= ts < start + size:
                windows.setdefault((start, key), []).append(values)
    for (start, key), rows in sorted(windows.items()):
        out = {"window_start": start, "window_end": start + size}
        for name, text in zip(cfg["group_by"], key):
            out[name] = json.loads(text)
        for i, (name, fn, _) in enumerate(cfg["aggregates"]):
            present = [r[i] for r in rows if r[i] is not None]
            if fn == "count":
                out[name] = len(rows)
            elif fn == "count_distinct":
                out[name] = len(set(present))
            elif fn == "sum":
                out[name] = str(sum(present, Decimal(0)))
            elif fn == "avg":
                out[name] = str((sum(present, Decimal(0)) / len(present)).quantize(
                    Decimal("1e-9"), rounding=ROUND_HALF_EVEN)) if present else None
            elif fn == "min":
                out[name] = str(min(present)) if present else None
            elif fn == "max":
                out[name] = str(max(present)) if present else None
        print(json.dumps(out))
    print(malformed, file=sys.stderr)


if __name__ == "__main__":
    main()
