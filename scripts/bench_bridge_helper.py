"""Helper of scripts/bench-bridge: produces the benchmark's messages, runs the seed-style
baseline (a confluent-kafka consumer with redis-py XADD per message), and measures a Stream.

  bench_bridge_helper.py produce BOOTSTRAP TOPIC COUNT SIZE
  bench_bridge_helper.py baseline BOOTSTRAP TOPIC GROUP REDIS_PORT STREAM COUNT
  bench_bridge_helper.py measure REDIS_PORT STREAM COUNT NAME T0 T1
  bench_bridge_helper.py table RESULTS COUNT SIZE PARTITIONS
  bench_bridge_helper.py produce-frames BOOTSTRAP TOPIC COUNT
  bench_bridge_helper.py frames-table SUMMARY_JSON REDIS_PORT STREAM COUNT
"""
import json
import os
import statistics
import sys

import redis
from confluent_kafka import Consumer, Producer


def produce(bootstrap, topic, count, size):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    pad = os.urandom(size // 2).hex()[: max(0, size - 32)]
    for i in range(count):
        value = f'{{"i":{i},"pad":"{pad}"}}'
        while True:
            try:
                p.produce(topic, key=f"camera-{i % 16}", value=value)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(60)


def baseline(bootstrap, topic, group, port, stream, count):
    """What the seed does: consume one message, XADD it, one round trip each."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    c.subscribe([topic])
    r = redis.Redis(port=port)
    n = 0
    while n < count:
        msg = c.poll(1.0)
        if msg is None or msg.error():
            continue
        r.xadd(stream, {"value": msg.value(), "kafka_partition": msg.partition(), "kafka_offset": msg.offset()})
        n += 1
    c.close()


def measure(port, stream, count, name, t0, t1):
    """Messages per second between the first and the last entry (their ids carry the time of
    the XADD in ms), so that group join and process start are not counted."""
    print(json.dumps({"name": name, "rate": stream_rate(port, stream, count, name), "wall": t1 - t0}))


def stream_rate(port, stream, count, name):
    """Entries per second from the first to the last entry of a Stream that must hold `count`."""
    r = redis.Redis(port=port)
    length = r.xlen(stream)
    if length != count:
        sys.exit(f"{name} moved {length} of {count} messages")
    first = r.xrange(stream, count=1)[0][0].decode()
    last = r.xrevrange(stream, count=1)[0][0].decode()
    ms = int(last.split("-")[0]) - int(first.split("-")[0])
    return (length - 1) / max(ms, 1) * 1000


def table(path, count, size, partitions):
    rows = [json.loads(line) for line in open(path)]
    med = lambda xs: statistics.median(xs)
    f = [r for r in rows if r["name"] == "ferry"]
    p = [r for r in rows if r["name"] == "python"]
    fr, pr = med([r["rate"] for r in f]), med([r["rate"] for r in p])
    fw, pw = med([r["wall"] for r in f]), med([r["wall"] for r in p])
    print(f"### Kafka → Stream, {count} messages of {size} B, {partitions} partitions ({len(f)} rounds, median)")
    print()
    print("| | msg/s (first → last XADD) | wall time, s (incl. start and group join) |")
    print("|---|---:|---:|")
    print(f"| python (confluent-kafka + XADD per message) | {pr:,.0f} | {pw:.1f} |")
    print(f"| ferry bridge run --once --batch 1000 | {fr:,.0f} | {fw:.1f} |")
    print(f"| ratio ferry / python | {fr / pr:.1f}x | {pw / fw:.1f}x faster |")
    print()
    print("rounds, msg/s: ferry " + ", ".join(f"{r['rate']:,.0f}" for r in f)
          + "; python " + ", ".join(f"{r['rate']:,.0f}" for r in p))
    print()
    print(f"target ferry >= 50k msg/s: {'met' if fr >= 50000 else 'NOT met'}")
    print()


def produce_frames(bootstrap, topic, count):
    """The seed's frames: JSON with a 1280x720 PNG in image_base64 (the scene of
    bench_bridge_frames.py), each about 3 MB."""
    import base64
    import io
    import random

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_bridge_frames import scene

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 20_000_000})
    rng = random.Random(7)
    distinct = []
    for _ in range(min(count, 20)):
        buf = io.BytesIO()
        scene(rng).save(buf, "PNG")
        distinct.append(base64.b64encode(buf.getvalue()).decode())
    for i in range(count):
        frame = {"frame_id": f"frame_{i:05d}", "camera_id": f"cam-{i % 4}", "timestamp": 1767225600 + i / 10,
                 "image_base64": distinct[i % len(distinct)]}
        p.produce(topic, value=json.dumps(frame))
        p.poll(0)
    p.flush(120)


def frames_table(summary_path, port, stream, count):
    summary = json.load(open(summary_path))
    rate = stream_rate(port, stream, count, "ferry")
    print(f"### Frames end to end: {count} JSON frames (1280x720 PNG in base64) → ProcessedFrame with JPEG 85, all cores")
    print()
    print("| frames/s (first → last XADD) | message bytes in → out | saved | image ratio |")
    print("|---:|---|---:|---:|")
    b_in, b_out = summary["bytes_in"], summary["bytes_out"]
    print(f"| {rate:.1f} | {b_in / count / 1e6:.2f} MB → {b_out / count / 1e6:.3f} MB per frame | "
          f"{100 * (1 - b_out / b_in):.0f} % | {summary['compression_ratio']:.1f}x |")
    print()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "baseline":
        baseline(args[0], args[1], args[2], int(args[3]), args[4], int(args[5]))
    elif cmd == "measure":
        measure(int(args[0]), args[1], int(args[2]), args[3], float(args[4]), float(args[5]))
    elif cmd == "produce-frames":
        produce_frames(args[0], args[1], int(args[2]))
    elif cmd == "frames-table":
        frames_table(args[0], int(args[1]), args[2], int(args[3]))
    elif cmd == "table":
        table(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")
