#!/usr/bin/env python3
"""Independent expected output for dataflows/unique-users.toml (Python 3 stdlib only).

Usage: unique_users_expected.py INPUT.jsonl > expected.json

A record counts when it is a JSON object whose ROOT holds an integer `ts` (unix seconds) and a
`uid`; json.loads keeps the last of repeated keys and never looks at nested ones. Windows: 1m, 1h,
1d tumbling (epoch aligned) and calendar week (ISO, Monday), month and year, all UTC. Prints
{"rows": [...], "invalid": n} with one row per (window label, start) like streamstats writes.
"""
import calendar
import datetime
import json
import sys

UTC = datetime.timezone.utc


def epoch_ms(moment):
    return calendar.timegm(moment.timetuple()) * 1000


def windows_of(ts):
    """(label, start_ms, end_ms) of every window containing unix second `ts`."""
    for label, size in (("1m", 60), ("1h", 3600), ("1d", 86400)):
        start = ts - ts % size
        yield label, start * 1000, (start + size) * 1000
    day = datetime.datetime.fromtimestamp(ts, UTC).date()
    monday = day - datetime.timedelta(days=day.weekday())
    yield "1w", epoch_ms(monday), epoch_ms(monday + datetime.timedelta(days=7))
    first = day.replace(day=1)
    following = (first.replace(year=first.year + 1, month=1) if first.month == 12
                 else first.replace(month=first.month + 1))
    yield "1mo", epoch_ms(first), epoch_ms(following)
    year = day.replace(month=1, day=1)
    yield "1y", epoch_ms(year), epoch_ms(year.replace(year=year.year + 1))


def main(path):
    users, frames, invalid = {}, {}, 0
    with open(path, "rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                invalid += 1
                continue
            ts = record.get("ts") if isinstance(record, dict) else None
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0 or "uid" not in record:
                invalid += 1
                continue
            for window in windows_of(ts):
                users.setdefault(window, set()).add(record["uid"])
                frames[window] = frames.get(window, 0) + 1
    rows = []
    for (label, start, end), uids in sorted(users.items()):
        count = frames[(label, start, end)]
        rows.append({
            "window": label, "window_start": start, "window_end": end,
            "unique_users": len(uids), "frames": count,
            "avg_frames_per_second": round(count / ((end - start) / 1000), 6),
        })
    json.dump({"rows": rows, "invalid": invalid}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
