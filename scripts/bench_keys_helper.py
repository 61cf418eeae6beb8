#!/usr/bin/env python3
"""Helpers for scripts/bench-keys (run with the repo's .venv python; needs the `redis` package).

  free-port                                   print a free TCP port on 127.0.0.1
  gen-resp --baselines DIR --keys N [--seed S] write to stdout, as RESP for `redis-cli --pipe`,
                                              exactly the commands gen_seed_keys.py would send
  copy-resp --baselines DIR --url URL --out F write `COPY old new` in RESP for every old key,
                                              new names from seed_keys_migrate.new_name
  count --url URL --match GLOB                 print how many keys match GLOB (SCAN, COUNT 1000)
  json-get FILE PATH                          print a field (dotted PATH) of a JSON file, or of
                                              the last JSON line of a text file
  table --rows TSV --out MD [--title T]       render the results as a markdown table
"""
import argparse
import contextlib
import io
import json
import os
import socket
import sys


def _import_baselines(path):
    sys.path.insert(0, os.path.abspath(path))


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8", "surrogateescape")
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespPipeline:
    """Stands in for redis-py's client and pipeline in gen_seed_keys.py: every command it is
    given is written as RESP instead of being sent, so the data set is byte-for-byte the one the
    generator would have produced, loaded at the speed of `redis-cli --pipe`."""

    def __init__(self, out):
        self.out = out

    def pipeline(self, transaction=True):
        return self

    def set(self, key, value):
        self.out.write(resp("SET", key, value))

    def hset(self, key, mapping):
        flat = []
        for field, value in mapping.items():
            flat += [field, value]
        self.out.write(resp("HSET", key, *flat))

    def rpush(self, key, *values):
        self.out.write(resp("RPUSH", key, *values))

    def pexpire(self, key, ms):
        self.out.write(resp("PEXPIRE", key, ms))

    def execute(self):
        return []

    def dbsize(self):
        return None


def gen_resp(a):
    _import_baselines(a.baselines)
    import gen_seed_keys

    out = open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False)
    fake = RespPipeline(out)
    gen_seed_keys.redis.Redis.from_url = staticmethod(lambda url: fake)
    sys.argv = ["gen_seed_keys.py", "--keys", str(a.keys), "--seed", str(a.seed)]
    with contextlib.redirect_stdout(io.StringIO()):  # its summary line is not RESP
        gen_seed_keys.main()
    out.flush()


def copy_resp(a):
    _import_baselines(a.baselines)
    import redis
    import seed_keys_migrate as m

    r = redis.Redis.from_url(a.url)
    n = 0
    with open(a.out, "wb", buffering=1 << 20) as f:
        for key in r.scan_iter(match=m.OLD + "*", count=1000):
            f.write(resp("COPY", key, m.new_name(key)))
            n += 1
    print(n)


def count(a):
    import redis

    r = redis.Redis.from_url(a.url)
    print(sum(1 for _ in r.scan_iter(match=a.match, count=1000)))


def json_get(a):
    with open(a.file) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        lines = [line for line in text.splitlines() if line.strip().startswith("{")]
        if not lines:
            sys.exit(f"no JSON in {a.file}")
        doc = json.loads(lines[-1])
    for part in a.path.split("."):
        doc = doc[part]
    print(doc)


def free_port(_a):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def table(a):
    rows = []
    with open(a.rows) as f:
        for line in f:
            scenario, role, tool, keys, seconds, rss = line.rstrip("\n").split("\t")
            rows.append(dict(scenario=scenario, role=role, tool=tool, keys=int(keys),
                             seconds=float(seconds), rss=float(rss) if rss != "-" else None))
    by_role = {r["role"]: r for r in rows}

    def kps(r):
        return r["keys"] / r["seconds"] if r["seconds"] > 0 else float("inf")

    def ratio(ferry_role, base_role, target=None):
        f, b = by_role.get(ferry_role), by_role.get(base_role)
        if not f or not b:
            return "n/a (no ferry run)", (f"≥ {target:g}×" if target else "")
        x = kps(f) / kps(b)
        verdict = ""
        if target:
            verdict = f"≥ {target:g}×: " + ("met" if x >= target else "MISSED")
        return f"ferry ÷ this = {x:.2f}×", verdict

    lines = [
        "| scenario | tool | keys | seconds | keys/s | ratio | target |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        role = r["role"]
        rat, tgt = "", ""
        if role == "a-per-key":
            rat, tgt = ratio("a-ferry", role)
        elif role == "a-pipelined":
            rat, tgt = ratio("a-ferry", role, 8)
        elif role == "a-copy":
            rat, tgt = ratio("a-ferry", role, 0.6)
        elif role == "b-pipelined":
            rat, tgt = ratio("b-ferry", role, 5)
        elif role in ("a-ferry", "b-ferry"):
            rat = "—"
        if r["rss"] is not None:
            rat = f"peak RSS {r['rss']:.1f} MB"
            if role == "c-big":
                tgt = "≤ 64 MB: " + ("met" if r["rss"] <= 64 else "MISSED")
                small = by_role.get("c-small")
                if small and small["rss"]:
                    tgt += f"; {r['rss'] / small['rss']:.2f}× the RSS at {small['keys']:,} keys"
        lines.append(f"| {r['scenario']} | {r['tool']} | {r['keys']:,} | {r['seconds']:.2f} | "
                     f"{kps(r):,.0f} | {rat} | {tgt} |")
    text = "\n".join(lines) + "\n"
    if a.title:
        text = a.title + "\n\n" + text
    with open(a.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port").set_defaults(fn=free_port)
    p = sub.add_parser("gen-resp")
    p.add_argument("--baselines", required=True)
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(fn=gen_resp)
    p = sub.add_parser("copy-resp")
    p.add_argument("--baselines", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=copy_resp)
    p = sub.add_parser("count")
    p.add_argument("--url", required=True)
    p.add_argument("--match", required=True)
    p.set_defaults(fn=count)
    p = sub.add_parser("json-get")
    p.add_argument("file")
    p.add_argument("path")
    p.set_defaults(fn=json_get)
    p = sub.add_parser("table")
    p.add_argument("--rows", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--title")
    p.set_defaults(fn=table)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
