"""Seed-style baseline for scripts/bench-events: what the seed's save_and_publish_event() does.

For each event: one INSERT into PostgreSQL (committed), then one PUBLISH of its JSON on Redis,
as two separate steps (a crash between them loses the publish: the reason ferry exists). A
subscriber thread counts what arrives and measures save -> publish latency from the send time
each event carries, as the ferry load generator (examples/events_load.rs) does: save -> publish
(from the committed INSERT to the arrival) and send -> receive (from before the INSERT).

    bench_events_helper.py baseline POSTGRES_URL REDIS_URL COUNT RATE

RATE 0 publishes as fast as possible. Prints one JSON line with the same fields as the ferry
load generator.
"""

import json
import sys
import threading
import time

import psycopg
import redis

TABLE = """CREATE TABLE IF NOT EXISTS seed_events (
    id bigserial PRIMARY KEY, event_type text NOT NULL, camera_id text NOT NULL,
    timestamp timestamptz NOT NULL, frame_number bigint, snapshot_path text,
    event_data jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"""


def percentile(values, p):
    if not values:
        return float("nan")
    return values[round((len(values) - 1) * p)]


def baseline(pg_url, redis_url, count, rate):
    r = redis.Redis.from_url(redis_url)
    pubsub = r.pubsub()
    pubsub.subscribe("events")
    while pubsub.get_message(timeout=1.0) is None:  # the subscribe confirmation
        pass
    latencies = []  # save (committed) -> received
    e2e = []  # send (before the INSERT) -> received
    done = threading.Event()
    last = [time.monotonic()]

    def subscribe():
        while len(latencies) < count:
            msg = pubsub.get_message(timeout=30.0)
            if msg is None:
                break
            if msg["type"] != "message":
                continue
            event = json.loads(msg["data"])
            now = time.time_ns() // 1000
            latencies.append((now - event["saved_us"]) / 1000.0)
            e2e.append((now - event["event_data"]["sent_us"]) / 1000.0)
        last[0] = time.monotonic()
        done.set()

    thread = threading.Thread(target=subscribe, daemon=True)
    thread.start()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(TABLE)
        start = time.monotonic()
        publisher = redis.Redis.from_url(redis_url)
        for i in range(count):
            if rate > 0:
                due = start + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            data = {"sent_us": time.time_ns() // 1000, "producer": 0, "bbox": [10, 20, 110, 220]}
            row = conn.execute(
                "INSERT INTO seed_events (event_type, camera_id, timestamp, frame_number, snapshot_path, event_data)"
                " VALUES (%s, %s, now(), %s, %s, %s) RETURNING id, created_at, timestamp",
                (("tracking", "motion", "anpr")[i % 3], "camera-%02d" % (i % 16), i,
                 "snapshots/0/%d.jpg" % i, json.dumps(data)),
            ).fetchone()
            event = {"id": row[0], "event_type": ("tracking", "motion", "anpr")[i % 3],
                     "camera_id": "camera-%02d" % (i % 16), "timestamp": row[2].isoformat(),
                     "frame_number": i, "snapshot_path": "snapshots/0/%d.jpg" % i,
                     "event_data": data, "created_at": row[1].isoformat(),
                     "saved_us": time.time_ns() // 1000}
            publisher.publish("events", json.dumps(event))
        saved = time.monotonic() - start
    done.wait(60)
    seconds = last[0] - start
    latencies.sort()
    e2e.sort()
    print(json.dumps({
        "events": count, "received": len(latencies), "seconds": seconds, "save_seconds": saved,
        "events_per_s": len(latencies) / seconds if seconds else None,
        "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else None,
        "e2e_p50_ms": percentile(e2e, 0.5), "e2e_p99_ms": percentile(e2e, 0.99),
    }))
    if len(latencies) != count:
        sys.exit("only %d of %d events arrived" % (len(latencies), count))


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "baseline":
        sys.exit(__doc__)
    baseline(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
