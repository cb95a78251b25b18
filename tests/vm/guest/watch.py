#!/usr/bin/env python3
"""Watchers the VM bench's scenarios run in the background of the guest (stdlib only).

    watch.py health OUT.jsonl [PERIOD_MS]   polls /api/v1/health and /api/v1/gpio (WATCH_GPIO=0: health only)
    watch.py mjpeg  OUT.jsonl URL            reads a multipart/x-mixed-replace stream
    watch.py ws     OUT.jsonl URL            a WebSocket live viewer: subscribes, logs messages
    watch.py dir    OUT.jsonl PATH           every 100 ms, what is in a directory (every file below
                                             it, with its size): a line at start and at each change

Each writes one JSON object per line, stamped with "t_ms": CLOCK_MONOTONIC in milliseconds (the
clock of V4L2 buffer timestamps and of benchcam's capture_monotonic_us), and runs until it is
killed (lib.sh's bg records it; main.sh ends it after the scenario).
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import http.client
import time
from urllib.parse import urlparse

def now_ms():
    return round(time.monotonic() * 1000, 1)


def emit(out, obj):
    obj = {"t_ms": now_ms(), **obj}
    out.write(json.dumps(obj) + "\n")
    out.flush()


class Client:
    """GET over one kept-alive HTTP/1.1 connection (a new connection per request costs the TCG
    guest more than the request), reconnecting after an error."""

    def __init__(self):
        self.conn = None

    def get_json(self, path, timeout=2):
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=timeout)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise OSError(f"HTTP {r.status}")
                return json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def health(out, period_ms=100):
    """Every PERIOD_MS: status, problems and each camera's state and counters; the LEDs."""
    period = period_ms / 1000
    client = Client()
    while True:
        t0 = time.monotonic()
        rec = {}
        try:
            h = client.get_json("/api/v1/health")
            rec["status"] = h.get("status")
            rec["problems"] = h.get("problems")
            st = h.get("storage") or {}
            rec["storage"] = {k: st.get(k) for k in ("state", "device", "writable", "full")}
            rec["cameras"] = [
                {k: c.get(k) for k in ("id", "state", "frames_captured", "frames_recorded", "current_clip",
                                       "reconnects", "driver_frames_dropped", "corrupt_frames", "recording",
                                       "frames_dropped", "recorder_frames_dropped", "recorder_frames_failed",
                                       "recording_paused")}
                for c in h.get("cameras", [])
            ]
        except Exception as e:  # the service may be restarting
            rec["health_error"] = str(e)[:200]
        if os.environ.get("WATCH_GPIO", "1") != "0":
            try:
                rec["gpio"] = client.get_json("/api/v1/gpio")
            except Exception as e:
                rec["gpio_error"] = str(e)[:200]
        emit(out, rec)
        time.sleep(max(0.0, period - (time.monotonic() - t0)))


def _connect(url):
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port or 80), timeout=30)
    path = u.path + ("?" + u.query if u.query else "")
    return s, u, path


def _read_headers(f):
    status = f.readline().decode("latin-1").strip()
    headers = {}
    while True:
        line = f.readline().decode("latin-1").strip()
        if not line:
            return status, headers
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()


def mjpeg(out, url):
    """Every part of the stream: its size, whether it is a JPEG, a hash of its bytes."""
    s, u, path = _connect(url)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.hostname}\r\nConnection: close\r\n\r\n".encode())
    f = s.makefile("rb")
    status, headers = _read_headers(f)
    emit(out, {"event": "response", "status": status, "content_type": headers.get("content-type")})
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    stream = _Dechunk(f) if chunked else f
    n = 0
    while True:
        # --boundary, part headers, blank line, Content-Length bytes
        line = stream.readline()
        if not line:
            emit(out, {"event": "end"})
            return
        if not line.startswith(b"--"):
            continue
        part = {}
        while True:
            h = stream.readline()
            if not h or h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            part[k.strip().lower()] = v.strip()
        length = int(part.get("content-length", "0"))
        body = stream.read(length) if length else b""
        n += 1
        emit(out, {"event": "part", "n": n, "size": len(body), "jpeg": body[:2] == b"\xff\xd8",
                   "md5": hashlib.md5(body).hexdigest()})


class _Dechunk:
    """A file-like reader over an HTTP/1.1 chunked body (readline and read)."""

    def __init__(self, f):
        self.f = f
        self.buf = b""
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        size_line = self.f.readline()
        if not size_line:
            self.eof = True
            return False
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            self.eof = True
            return False
        self.buf += self.f.read(size)
        self.f.readline()  # CRLF after the chunk
        return True

    def readline(self):
        while b"\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read(self, n):
        while len(self.buf) < n:
            if not self._fill():
                break
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def ws(out, url):
    """A WebSocket viewer at the low quality: subscribes to JPEG frames; logs every text message
    (frames as their metadata, no_frame, status, errors) and the size of every binary one."""
    s, u, path = _connect(url)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port or 80}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    f = s.makefile("rb")
    status, headers = _read_headers(f)
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    emit(out, {"event": "handshake", "status": status, "accept_ok": headers.get("sec-websocket-accept") == accept})
    _ws_send(s, json.dumps({"type": "subscribe"}))
    _ws_send(s, json.dumps({"type": "set_quality", "quality": "low"}))
    binary = 0
    while True:
        op, data = _ws_recv(f)
        if op is None:
            emit(out, {"event": "end"})
            return
        if op == 1:
            try:
                msg = json.loads(data)
            except ValueError:
                msg = {"raw": data[:200].decode("latin-1")}
            emit(out, {"event": "text", "msg": msg})
        elif op == 2:
            binary += 1
            emit(out, {"event": "binary", "n": binary, "size": len(data), "jpeg": data[:2] == b"\xff\xd8"})
        elif op == 8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
            emit(out, {"event": "close", "code": code, "reason": data[2:].decode("utf-8", "replace")})
            return
        elif op == 9:
            _ws_send(s, data, opcode=10)


def _ws_send(s, payload, opcode=1):
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _ws_recv(f):
    """One whole message (fragments joined): (opcode, payload), or (None, b"") at the end."""
    opcode, data = None, b""
    while True:
        h = f.read(2)
        if len(h) < 2:
            return None, b""
        fin, op = h[0] & 0x80, h[0] & 0x0F
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        if h[1] & 0x80:
            m = f.read(4)
            payload = bytes(b ^ m[i % 4] for i, b in enumerate(f.read(n)))
        else:
            payload = f.read(n)
        if op in (8, 9, 10):
            return op, payload
        if op != 0:
            opcode = op
        data += payload
        if fin:
            return opcode, data


def listdir(out, path):
    """Logs PATH's contents (relative paths and sizes of everything below it) at start and
    whenever they change, every 100 ms."""
    last = None
    while True:
        found = []
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                p = os.path.join(root, n)
                try:
                    found.append([os.path.relpath(p, path), os.lstat(p).st_size])
                except OSError:
                    pass
        found.sort()
        if found != last:
            emit(out, {"path": path, "entries": found})
            last = found
        time.sleep(0.1)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path, "a") as out:
        try:
            if kind == "health":
                health(out, int(sys.argv[3]) if len(sys.argv) > 3 else 100)
            elif kind == "mjpeg":
                mjpeg(out, sys.argv[3])
            elif kind == "ws":
                ws(out, sys.argv[3])
            elif kind == "dir":
                listdir(out, sys.argv[3])
            else:
                sys.exit(f"watch.py: unknown watcher {kind}")
        except (OSError, ValueError) as e:
            emit(out, {"event": "error", "error": str(e)[:300]})


if __name__ == "__main__":
    main()
