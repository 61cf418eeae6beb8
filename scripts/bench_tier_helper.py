"""Helpers of scripts/bench-tier: fill Redis with due caption streams, and the seed-style
baseline (what the seed's migration service does, in Python) for the same data.

    bench_tier_helper.py fill --port P --cameras N --captions M [--layout stream|keys]
    bench_tier_helper.py baseline --port P --db FILE --layout keys
"""

import argparse
import json
import sqlite3
import sys
import time
from difflib import SequenceMatcher

import redis

SCENES = [
    ["man in fields", "a man standing in a field", "man working in agricultural field", "person in the fields"],
    ["red car parked at the gate", "a red car parked near the gate", "red vehicle parked by the entrance gate"],
    ["delivery truck unloading boxes at the dock", "workers unload a truck at the loading dock", "boxes carried off a delivery truck"],
    ["empty parking lot at night", "a deserted car park in the dark", "parking lot with no cars at night"],
    ["two people talking near the door", "a pair of people chatting by the entrance", "two men having a conversation at the doorway"],
    ["dog running across the yard", "a dog runs through the backyard", "a small dog sprinting across the lawn"],
]
PREFIX = "surveillance camera view of "


def captions(camera_index, count, start_ms, unique=False):
    """Scenes of 30 captions, one every 2 s, texts varying within a scene. With `unique`, every
    caption is worded differently (a frame number), so no embedding can come from a cache."""
    for i in range(count):
        scene = SCENES[(i // 30 + camera_index) % len(SCENES)]
        text = scene[i % len(scene)]
        if i % 3 == 0:
            text = PREFIX + text
        if unique:
            text = f"{text} in frame {camera_index * count + i}"
        yield start_ms + i * 2000, text


def fill(args):
    r = redis.Redis(port=args.port)
    start = int(time.time() * 1000) - 3 * 3600 * 1000 - args.captions * 2000
    pipe = r.pipeline(transaction=False)
    n = 0
    for cam in range(args.cameras):
        for ts, text in captions(cam, args.captions, start, args.unique):
            if args.layout == "stream":
                pipe.xadd(f"captions:cam{cam}", {"caption": text}, id=f"{ts}-0")
            else:
                body = json.dumps({"camera_id": f"cam{cam}", "caption": text, "timestamp": ts / 1000})
                pipe.set(f"caption:cam{cam}:{ts}", body, ex=7 * 24 * 3600)
            n += 1
            if n % 10000 == 0:
                pipe.execute()
    pipe.execute()
    print(n)


def baseline(args):
    """The seed's migration: find caption keys, group consecutive captions per camera whose
    text similarity is >= 0.95 (difflib in place of the seed's embedding model), write events to
    a database, delete the keys. Reads are pipelined, so this is the seed's logic at its best."""
    r = redis.Redis(port=args.port)
    db = sqlite3.connect(args.db)
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, camera_id TEXT, caption TEXT,"
        " start_ms INTEGER, end_ms INTEGER, frame_count INTEGER)"
    )
    started = time.time()
    per_camera = {}
    for key in r.scan_iter(match="caption:*", count=1000):
        _, cam, ts = key.decode().rsplit(":", 2)
        per_camera.setdefault(cam, []).append(int(ts))
    total = 0
    for cam, stamps in per_camera.items():
        stamps.sort()
        for i in range(0, len(stamps), 1000):
            chunk = stamps[i:i + 1000]
            keys = [f"caption:{cam}:{ts}" for ts in chunk]
            values = r.mget(keys)
            events = []
            current = None
            for ts, raw in zip(chunk, values):
                if raw is None:
                    continue
                text = json.loads(raw)["caption"]
                if current and SequenceMatcher(None, current["caption"], text).ratio() >= 0.95:
                    current["end_ms"] = ts
                    current["frames"] += 1
                else:
                    current = {"id": f"{cam}-{ts}", "caption": text, "start_ms": ts, "end_ms": ts, "frames": 1}
                    events.append(current)
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                    [(e["id"], cam, e["caption"], e["start_ms"], e["end_ms"], e["frames"]) for e in events],
                )
            r.delete(*keys)
            total += len(keys)
    elapsed = time.time() - started
    print(f"{total} {elapsed:.3f}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--cameras", type=int, required=True)
    f.add_argument("--captions", type=int, required=True)
    f.add_argument("--layout", default="stream")
    f.add_argument("--unique", action="store_true")
    b = sub.add_parser("baseline")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--db", required=True)
    args = p.parse_args()
    {"fill": fill, "baseline": baseline}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
