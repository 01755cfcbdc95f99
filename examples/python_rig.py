#!/usr/bin/env python3
"""A complete sharedlens rig client in Python (python-socketio + msgpack), e.g. for PsychoPy.

It starts a session, streams trials of binned spike counts (synthetic here: replace `acquire_bins` with
your acquisition), asks the server for follow-up stimuli and prints them, handles suggestions pushed from
the dashboard, resumes after a dropped connection, and ends the session. The protocol is in
docs/protocol.md.

Usage: python3 examples/python_rig.py [--url http://127.0.0.1:8450] [--token demo-rig-token]
                                      [--channels 16] [--trials 200] [--fast]
Debian packages: python3-socketio python3-msgpack python3-websocket (or pip: python-socketio msgpack
websocket-client).
"""
import argparse
import json
import random
import sys
import threading
import time
import urllib.request

import msgpack
import socketio


class RigError(Exception):
    """The server refused an event; `code` and `message` say why (docs/protocol.md, Errors)."""

    def __init__(self, error):
        super().__init__(f"{error['code']}: {error['message']} {error.get('details', '')}")
        self.code = error["code"]


class Rig:
    """Numbers events, keeps the unacknowledged ones, resends them after `session:resume`."""

    def __init__(self, url, token, timeout=10):
        self.url, self.timeout = url, timeout
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2)
        self.session_id, self.seq, self.outbox = None, 0, {}
        self.lock = threading.Lock()
        self.pushed = []
        self.sio.on("connect", self._on_connect, namespace="/rig")
        self.sio.on("followup:suggested", self._on_pushed, namespace="/rig")
        self.sio.on("rig:error", lambda e: print("server error:", e, file=sys.stderr), namespace="/rig")
        self.sio.connect(url, namespaces=["/rig"], auth={"token": token}, transports=["websocket"], wait_timeout=timeout)

    def _call(self, event, body):
        ack = self.sio.call(event, msgpack.packb(body, use_bin_type=True), namespace="/rig", timeout=self.timeout)
        if "error" in ack:
            raise RigError(ack["error"])
        return ack["data"]

    def _on_connect(self):
        if self.session_id is None:
            return
        # after a reconnect: resume, then resend what the server has not acknowledged
        last = self._call("session:resume", {"sessionId": self.session_id})["lastSeq"]
        with self.lock:
            pending = sorted(self.outbox.items())
        for seq, (event, body) in pending:
            if seq > last:
                self._call(event, body)
            with self.lock:
                self.outbox.pop(seq, None)

    def _on_pushed(self, msg):
        self.pushed.append(msg["suggestions"])
        print(f"dashboard sent {len(msg['suggestions'])} follow-up stimuli:", ", ".join(s["stimulusId"] for s in msg["suggestions"]))

    def start(self, **session):
        self.session_id = self._call("session:start", session)["sessionId"]
        return self.session_id

    def send(self, event, **body):
        with self.lock:
            self.seq += 1
            seq = self.seq
            payload = dict(body, sessionId=self.session_id, seq=seq)
            self.outbox[seq] = (event, payload)
        data = self._call(event, payload)
        with self.lock:
            self.outbox.pop(seq, None)
        if data.get("gap"):
            print("server reports missing events:", data["gap"], file=sys.stderr)
        return data

    def close(self):
        self.sio.disconnect()


def acquire_bins(rng, channels, n_bins, rates_hz, bin_ms):
    """Synthetic Poisson-ish counts, bins x channels, as little-endian uint16 bytes."""
    out = bytearray()
    for _ in range(n_bins):
        for c in range(channels):
            p = rates_hz[c] * bin_ms / 1000.0
            count = 1 if rng.random() < p else 0
            out += count.to_bytes(2, "little")
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8450")
    ap.add_argument("--token", default="demo-rig-token")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--set", default="demo")
    ap.add_argument("--fast", action="store_true", help="do not wait in real time")
    ap.add_argument("--followups", type=int, default=5)
    args = ap.parse_args()

    # the rig token also reads the stimulus sets over HTTP (docs/security.md)
    req = urllib.request.Request(f"{args.url}/api/stimuli/{args.set}", headers={"Authorization": f"Bearer {args.token}"})
    manifest = json.load(urllib.request.urlopen(req))
    stimuli = manifest["stimuli"]
    rng = random.Random(7)
    # each channel prefers one category
    cats = sorted({s["category"] for s in stimuli})
    prefs = [cats[c % len(cats)] for c in range(args.channels)]
    timing = {"responseWindowMs": 200, "latencyMs": 50, "baselineWindowMs": 100, "binWidthMs": 1}
    rig = Rig(args.url, args.token)
    session_id = rig.start(rigId="python-rig", subject="P1", stimulusSetId=args.set, timing=timing,
                           channels=[{"id": f"py{c:03d}", "label": f"electrode {c}", "area": "STS"} for c in range(args.channels)])
    print("session", session_id)
    t_ms, chunk = 1000.0, 50
    for trial in range(args.trials):
        stim = rng.choice(stimuli)
        onset, offset = t_ms, t_ms + 200
        rig.send("stim:onset", trial=trial, stimulusId=stim["id"], tMs=onset)
        for start in range(0, 400, chunk):
            evoked = [60.0 if (stim["category"] == prefs[c] and 50 <= start < 250) else 8.0 for c in range(args.channels)]
            rig.send("counts:binned", startMs=t_ms + start, binWidthMs=1, counts=acquire_bins(rng, args.channels, chunk, evoked, 1))
            if start == 200:
                rig.send("stim:offset", trial=trial, stimulusId=stim["id"], tMs=offset)
            if not args.fast:
                time.sleep(chunk / 1000.0)
        t_ms += 400
    try:
        ack = rig.send("followup:request", count=args.followups, mix={"probe": 1, "improve": 1, "confirm": 1})
        print(f"{len(ack['suggestions'])} follow-up stimuli:")
        for s in ack["suggestions"]:
            print(f"  {s['rank'] + 1}. {s['stimulusId']} [{s['strategy']}] {s['reason']}")
        for note in ack.get("notes", []):  # why a strategy asked for gave nothing
            print(f"  note: {note}")
    except RigError as e:
        print("no follow-ups:", e, file=sys.stderr)
    rig.send("session:end")
    rig.close()


if __name__ == "__main__":
    main()
