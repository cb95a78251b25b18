#!/usr/bin/env python3
"""The VM bench's hotplug agent's QMP client (host side; stdlib only).

    qmp.py SOCKET del ID                 device_del ID, then waits for its DEVICE_DELETED event
    qmp.py SOCKET add ID DRIVER BUS NODE device_add DRIVER (bus BUS, drive NODE) as ID

Prints one JSON object: {"ok": bool, "command": ..., "reply": ..., "event": ..., "t_wall_ms": ...,
"t_done_wall_ms": ...} (host wall clock when the command was sent and when it was done).
"""
import json
import socket
import sys
import time


def main():
    path, op, dev_id = sys.argv[1], sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    f = s.makefile("rwb")

    def recv():
        line = f.readline()
        if not line:
            raise OSError("QMP connection closed")
        return json.loads(line)

    def call(cmd, args=None):
        f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}).encode() + b"\n")
        f.flush()
        events = []
        while True:
            m = recv()
            if "return" in m or "error" in m:
                return m, events
            events.append(m)

    recv()  # the greeting
    call("qmp_capabilities")
    out = {"op": op, "id": dev_id, "t_wall_ms": round(time.time() * 1000)}
    if op == "del":
        reply, events = call("device_del", {"id": dev_id})
        out["reply"] = reply
        event = next((e for e in events if e.get("event") == "DEVICE_DELETED"
                      and e.get("data", {}).get("device") == dev_id), None)
        deadline = time.time() + 15
        while event is None and "error" not in reply and time.time() < deadline:
            m = recv()
            if m.get("event") == "DEVICE_DELETED" and m.get("data", {}).get("device") == dev_id:
                event = m
        out["event"] = event
        out["ok"] = "error" not in reply and event is not None
    elif op == "add":
        driver, bus, node = sys.argv[4], sys.argv[5], sys.argv[6]
        reply, _ = call("device_add", {"driver": driver, "bus": bus, "drive": node, "id": dev_id})
        out["reply"] = reply
        out["ok"] = "error" not in reply
    else:
        sys.exit(f"qmp.py: unknown operation {op}")
    out["t_done_wall_ms"] = round(time.time() * 1000)
    print(json.dumps(out))
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
