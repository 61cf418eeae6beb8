"""Helper of scripts/bench-vectors: fills a FalkorDB graph with embeddings, runs the seed's way
(one item at a time with the official clients) and the target servers' own insert ceilings, counts
what a target holds and prints the tables. Run with .venv/bin/python.

  bench_vectors_helper.py generate --port P --graph G --dataset gaussian|clustered --count N --dim D
  bench_vectors_helper.py seed-vset --port P --graph G --redis-port R --key K --quant Q [--items M]
  bench_vectors_helper.py ceiling-vset --port P --graph G --redis-port R --key K --quant Q
                          [--cache PREFIX] [--first M] [--cas] [--pipes K]
  bench_vectors_helper.py seed-milvus --port P --graph G --milvus-port R --collection C [--items M]
  bench_vectors_helper.py ceiling-milvus --port P --graph G --milvus-port R --collection C
                          [--cache PREFIX] [--batch 5000] [--op insert|upsert]
  bench_vectors_helper.py count-vset --redis-port R --key K
  bench_vectors_helper.py count-milvus --milvus-port R --collection C [--drop]
  bench_vectors_helper.py cpu --redis-port R
  bench_vectors_helper.py ferry-row --report FILE --items N --target vset|milvus [--quant Q]
                          [--redis-port R --cpu-before JSON]
  bench_vectors_helper.py table RESULTS_JSONL --json OUT.json

Every measuring command prints one JSON line: dataset, target (vset|milvus), quant, contender,
items, seconds, rate (items/s), and what else it knows (for vector sets the server's CPU seconds,
from INFO cpu). `--ef` and `--m` pass the vector set's build options (VADD EF / M) to the seed's
way and the ceiling alike; unset, the server's defaults apply (EF 200, M 16).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import redis
from falkordb import FalkorDB

LABEL = "Media"
CENTRES = 50
ID_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def graph(a):
    return FalkorDB(host="127.0.0.1", port=a.port).select_graph(a.graph)


# --- generate ---------------------------------------------------------------------------------


def dataset_chunks(name, count, dim, seed, chunk):
    """Yields (ids, float32 vectors) in chunks; the same for the same arguments.

    gaussian: integer ids 0..count-1, components drawn from N(0, 1).
    clustered: string ids `media-000123-x`, unit vectors around CENTRES random unit centres,
    with noise of norm about 0.35 before normalising.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        if name == "gaussian":
            ids = list(range(start, start + n))
            vectors = rng.standard_normal((n, dim)).astype(np.float32)
        elif name == "clustered":
            letters = rng.integers(0, len(ID_LETTERS), n)
            ids = [f"media-{start + i:06d}-{ID_LETTERS[k]}" for i, k in enumerate(letters)]
            which = rng.integers(0, CENTRES, n)
            noise = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(0.35 / np.sqrt(dim))
            vectors = centres[which] + noise
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        else:
            sys.exit(f"unknown data set {name}: use gaussian or clustered")
        yield ids, vectors.astype(np.float32)


def generate(a):
    g = graph(a)
    try:
        g.delete()
    except Exception:  # the graph does not exist yet
        pass
    g.query(f"CREATE INDEX FOR (m:{LABEL}) ON (m.id)")
    t0 = time.perf_counter()
    q = f"UNWIND $rows AS r CREATE (:{LABEL} {{id: r.id, embedding: vecf32(r.v)}})"
    for ids, vectors in dataset_chunks(a.dataset, a.count, a.dim, a.seed, a.batch):
        rows = [{"id": i, "v": v} for i, v in zip(ids, vectors.tolist())]
        g.query(q, {"rows": rows})
    n = g.ro_query(f"MATCH (m:{LABEL}) RETURN count(m)").result_set[0][0]
    if n != a.count:
        sys.exit(f"generate: the graph holds {n} of {a.count} items")
    print(json.dumps({"dataset": a.dataset, "items": n, "dim": a.dim,
                      "seconds": round(time.perf_counter() - t0, 3)}))


def read_items(g, page=1000):
    """Every (id, embedding) of the graph in id order, one keyset page at a time."""
    first = f"MATCH (m:{LABEL}) RETURN m.id, m.embedding ORDER BY m.id LIMIT $n"
    nxt = f"MATCH (m:{LABEL}) WHERE m.id > $last RETURN m.id, m.embedding ORDER BY m.id LIMIT $n"
    rows = g.ro_query(first, {"n": page}).result_set
    while rows:
        yield from rows
        if len(rows) < page:
            return
        rows = g.ro_query(nxt, {"n": page, "last": rows[-1][0]}).result_set


def load_items(a):
    """Every id and embedding of the graph (ids, float32 matrix), read once: with --cache PREFIX
    they are kept in PREFIX.npy and PREFIX.ids.json for the next contender."""
    if a.cache and os.path.exists(a.cache + ".npy"):
        with open(a.cache + ".ids.json") as f:
            return json.load(f), np.load(a.cache + ".npy")
    items = list(read_items(graph(a)))
    if not items:
        sys.exit("the graph holds no items: run generate first")
    ids = [i for i, _ in items]
    vectors = np.asarray([v for _, v in items], dtype=np.float32)
    if a.cache:
        np.save(a.cache + ".npy", vectors)
        with open(a.cache + ".ids.json", "w") as f:
            json.dump(ids, f)
    return ids, vectors


def row(a, target, contender, items, seconds, **extra):
    out = {"dataset": a.dataset, "target": target, "quant": getattr(a, "quant", None) if target == "vset" else None,
           "contender": contender, "items": items, "seconds": round(seconds, 3),
           "rate": round(items / seconds, 1) if seconds > 0 else None}
    out.update(extra)
    print(json.dumps(out), flush=True)


def server_cpu(r):
    """CPU seconds the server has used: all threads, and its main thread alone."""
    c = r.info("cpu")
    return c["used_cpu_user"] + c["used_cpu_sys"], c["used_cpu_user_main_thread"] + c["used_cpu_sys_main_thread"]


def cpu_since(r, before):
    """What the server used since `before` (server_cpu), for the JSON rows."""
    now = server_cpu(r)
    return {"server_cpu_s": round(now[0] - before[0], 2), "main_thread_cpu_s": round(now[1] - before[1], 2)}


def build_options(a):
    """The vector set's build options as this run sets them (for the JSON rows)."""
    return {"ef": a.ef, "m": a.m}


# --- vector sets ------------------------------------------------------------------------------


def seed_vset(a):
    """The seed's way: list the ids, then per id one Cypher query and one VADD (VALUES)."""
    from redis.commands.vectorset.commands import QuantizationOptions

    g, r = graph(a), redis.Redis(port=a.redis_port)
    quant = QuantizationOptions[a.quant.upper()]
    cpu0 = server_cpu(r)
    t0 = time.perf_counter()
    ids = [x[0] for x in g.query(f"MATCH (m:{LABEL}) RETURN m.id ORDER BY m.id LIMIT $n",
                                  {"n": a.items}).result_set]
    for item in ids:
        res = g.query(f"MATCH (m:{LABEL} {{id: $id}}) RETURN m.embedding", {"id": item}).result_set
        r.vset().vadd(a.key, res[0][0], str(item), quantization=quant, ef=a.ef, numlinks=a.m)
    dt = time.perf_counter() - t0
    held = r.vset().vcard(a.key)
    if held != len(ids):
        sys.exit(f"seed-vset: the vector set holds {held} of {len(ids)} items")
    row(a, "vset", "seed", len(ids), dt, **cpu_since(r, cpu0), **build_options(a))


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for x in args:
        x = x if isinstance(x, bytes) else str(x).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


def vadd_options(a):
    opts = [a.quant.upper()]
    if a.ef:
        opts += ["EF", a.ef]
    if a.m:
        opts += ["M", a.m]
    if a.cas:
        opts.append("CAS")
    return opts


def write_vadd_files(a, directory):
    """One file of RESP-encoded VADD ... FP32 commands per pipe (round robin); returns them and
    the item count."""
    ids, vectors = load_items(a)
    paths = [os.path.join(directory, f"vadd-{i}.resp") for i in range(a.pipes)]
    files = [open(p, "wb") for p in paths]
    opts = vadd_options(a)
    for n, (item, vector) in enumerate(zip(ids, vectors)):
        files[n % a.pipes].write(resp("VADD", a.key, "FP32", vector.astype("<f4").tobytes(), str(item), *opts))
    for f in files:
        f.close()
    return paths, len(ids)


def run_pipes(a, paths):
    """redis-cli --pipe of each file, all at once; fails on any error reply."""
    procs = []
    for p in paths:
        with open(p, "rb") as f:
            procs.append(subprocess.Popen([a.redis_cli, "-p", str(a.redis_port), "--pipe"], stdin=f,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for proc in procs:
        out = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0 or "errors: 0," not in out:
            sys.exit(f"ceiling-vset: redis-cli --pipe failed: {out.strip()}")


def ceiling_vset(a):
    """The server's own ceiling: VADD FP32 commands from prepared files (read and written
    untimed), replayed with redis-cli --pipe into an empty server; timed until VCARD = N."""
    r = redis.Redis(port=a.redis_port)
    if r.exists(a.key):
        sys.exit(f"ceiling-vset: {a.key} already exists; the ceiling needs an empty vector set")
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        paths, n = write_vadd_files(a, d)
        size = sum(os.path.getsize(p) for p in paths)
        cpu0 = server_cpu(r)
        t0 = time.perf_counter()
        first = FirstItems(a.redis_port, a.key, min(a.first, n), t0)
        run_pipes(a, paths)
        while r.vset().vcard(a.key) < n:
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        first.join()
    name = "ceiling" + (" CAS" if a.cas else "") + (f" {a.pipes} pipes" if a.pipes > 1 else "")
    row(a, "vset", name, n, dt, file_mb=round(size / 1e6, 1), cas=a.cas, pipes=a.pipes, **first.fields(),
        **cpu_since(r, cpu0), **build_options(a))


class FirstItems(threading.Thread):
    """Watches VCARD (every 10 ms) for the time the first `count` items took, to compare the
    ceiling with the seed's way on the same items (a small HNSW graph takes inserts faster)."""

    def __init__(self, port, key, count, t0):
        super().__init__(daemon=True)
        self.r, self.key, self.count, self.t0, self.seconds = redis.Redis(port=port), key, count, t0, None
        self.start()

    def run(self):
        while self.r.vset().vcard(self.key) < self.count:
            time.sleep(0.01)
        self.seconds = time.perf_counter() - self.t0

    def fields(self):
        if not self.seconds:
            return {}
        return {"first_items": self.count, "first_rate": round(self.count / self.seconds, 1)}


def count_vset(a):
    print(redis.Redis(port=a.redis_port).vset().vcard(a.key))


def cpu(a):
    """The server's CPU seconds so far (all threads, main thread), for ferry-row --cpu-before."""
    print(json.dumps(server_cpu(redis.Redis(port=a.redis_port))))


# --- Milvus -----------------------------------------------------------------------------------


def milvus(a):
    from pymilvus import MilvusClient

    return MilvusClient(uri=f"http://127.0.0.1:{a.milvus_port}")


def fresh_collection(a, client, id_is_int, dim):
    """A new collection shaped as Ferry creates one (crates/ferry-connectors/src/milvus/): primary
    key `id` (Int64, or VarChar(512) for string ids), `embedding` FloatVector(dim), strong
    consistency, an AUTOINDEX with the COSINE metric made before any data, loaded."""
    from pymilvus import DataType, MilvusClient

    if client.has_collection(a.collection):
        sys.exit(f"{a.collection} already exists; the benchmark needs a fresh collection")
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    if id_is_int:
        schema.add_field("id", DataType.INT64, is_primary=True)
    else:
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection(a.collection, schema=schema, index_params=index, consistency_level="Strong")


def milvus_count(client, collection):
    return client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"]


def first_item(g):
    res = g.ro_query(f"MATCH (m:{LABEL}) RETURN m.id, m.embedding ORDER BY m.id LIMIT 1").result_set
    if not res:
        sys.exit("the graph holds no items: run generate first")
    return res[0]


def seed_milvus(a):
    """The seed's way: per id one Cypher query and one single-row insert (collection made
    untimed; the final flush untimed too)."""
    g, client = graph(a), milvus(a)
    first = first_item(g)
    fresh_collection(a, client, isinstance(first[0], int), len(first[1]))
    t0 = time.perf_counter()
    ids = [x[0] for x in g.query(f"MATCH (m:{LABEL}) RETURN m.id ORDER BY m.id LIMIT $n",
                                  {"n": a.items}).result_set]
    for item in ids:
        res = g.query(f"MATCH (m:{LABEL} {{id: $id}}) RETURN m.embedding", {"id": item}).result_set
        client.insert(a.collection, [{"id": item, "embedding": res[0][0]}])
    dt = time.perf_counter() - t0
    client.flush(a.collection)
    held = milvus_count(client, a.collection)
    if held != len(ids):
        sys.exit(f"seed-milvus: the collection holds {held} of {len(ids)} items")
    row(a, "milvus", "seed", len(ids), dt)


def ceiling_milvus(a):
    """Large pymilvus batches of numpy vectors into a fresh collection (read from the graph and
    collection made untimed), timed until flushed and count = N."""
    client = milvus(a)
    ids, vectors = load_items(a)
    fresh_collection(a, client, isinstance(ids[0], int), vectors.shape[1])
    write = client.upsert if a.op == "upsert" else client.insert
    t0 = time.perf_counter()
    for s in range(0, len(ids), a.batch):
        write(a.collection, [{"id": ids[j], "embedding": vectors[j]} for j in range(s, min(s + a.batch, len(ids)))])
    client.flush(a.collection)
    while milvus_count(client, a.collection) < len(ids):
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    row(a, "milvus", "ceiling" + (" upsert" if a.op == "upsert" else ""), len(ids), dt, batch=a.batch, op=a.op)


def count_milvus(a):
    client = milvus(a)
    print(milvus_count(client, a.collection))
    if a.drop:
        client.drop_collection(a.collection)


# --- Ferry's report and the tables ------------------------------------------------------------


def ferry_row(a):
    """Ferry's rate from its JSON report: N / duration_ms."""
    with open(a.report) as f:
        report = json.load(f)
    ms = report.get("duration_ms")
    if not ms:
        sys.exit(f"ferry-row: {a.report} has no duration_ms")
    extra = {}
    if a.redis_port and a.cpu_before:
        extra = cpu_since(redis.Redis(port=a.redis_port), json.loads(a.cpu_before))
    phases = find_keys(report, ("planning_seconds", "copy_seconds"))
    row(a, a.target, a.name, a.items, ms / 1000, report=os.path.basename(a.report), **extra, **phases,
        **build_options(a))


def find_keys(value, names):
    """The first value of each of `names` anywhere in a JSON document."""
    found = {}
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if k in names and k not in found and isinstance(x, (int, float)):
                    found[k] = x
                else:
                    stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
    return found


DESCRIBE = {
    ("vset", "seed"): "seed's way: per item a Cypher query + redis-py vadd (VALUES)",
    ("vset", "ferry"): "ferry vectors migrate --workers 4 --batch 500",
    ("vset", "ferry CAS"): "ferry vectors migrate --workers 4 --batch 500 --cas (for reference)",
    ("milvus", "seed"): "seed's way: per item a Cypher query + pymilvus insert of one row",
    ("milvus", "ceiling"): "ceiling: pymilvus insert, batches of 5,000 numpy rows, flush",
    ("milvus", "ceiling upsert"): "pymilvus upsert, the same batches, flush (for reference: Ferry upserts)",
    ("milvus", "ferry"): "ferry vectors migrate --workers 4 --batch 500",
}


def describe(r):
    if r["target"] == "vset" and r["contender"].startswith("ceiling"):
        pipes = r.get("pipes", 1)
        how = "redis-cli --pipe" if pipes == 1 else f"{pipes} × redis-cli --pipe at once"
        cas = " … CAS" if r.get("cas") else ""
        return f"ceiling: {how} of VADD … FP32{cas}" + (" (for reference)" if r["contender"] != "ceiling" else "")
    return DESCRIBE.get((r["target"], r["contender"]), r["contender"])


def print_group(dataset, target, quant, rs):
    """One markdown table: every contender of one data set and target, with its ratios."""
    by = {r["contender"]: r for r in rs}
    ceiling, seed = by.get("ceiling"), by.get("seed")
    n = max(r["items"] for r in rs)
    if target == "vset":
        o = rs[0]
        where = (f"Redis vector set, {quant.upper()}, EF {o.get('ef') or 'default (200)'}, "
                 f"M {o.get('m') or 'default (16)'}")
    else:
        where = "Milvus Lite"
    cpu = any("server_cpu_s" in r for r in rs)
    print(f"### {dataset}: {n:,} vectors → {where}")
    print()
    print("| contender | items | seconds | vectors/s | ÷ ceiling | ÷ seed's way |"
          + (" server CPU s (main thread) |" if cpu else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if cpu else ""))
    for r in rs:
        rc = f"{r['rate'] / ceiling['rate']:.2f}×" if ceiling else "—"
        rsd = f"{r['rate'] / seed['rate']:.1f}×" if seed else "—"
        extra = ""
        if cpu:
            extra = f" {r['server_cpu_s']:.1f} ({r['main_thread_cpu_s']:.1f}) |" if "server_cpu_s" in r else " — |"
        print(f"| {describe(r)} | {r['items']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | {rc} | {rsd} |" + extra)
    print()
    ferry = by.get("ferry")
    if ferry and ceiling and ferry.get("copy_seconds"):
        copy_rate = ferry["items"] / ferry["copy_seconds"]
        print(f"ferry's {ferry['seconds']:.2f} s: {ferry.get('planning_seconds', 0):.2f} s planning (describing the "
              f"source, preparing the target, cutting the ids into ranges), {ferry['copy_seconds']:.2f} s copying "
              f"({copy_rate:,.0f}/s, {copy_rate / ceiling['rate']:.2f}× the ceiling).")
        print()
    if ferry and ceiling and seed:
        to_c, to_s = ferry["rate"] / ceiling["rate"], ferry["rate"] / seed["rate"]
        print(f"targets: ferry ≥ 0.9 × ceiling: {'met' if to_c >= 0.9 else 'NOT met'} ({to_c:.2f}×); "
              f"ferry ≥ 10 × seed's way: {'met' if to_s >= 10 else 'NOT met'} ({to_s:.1f}×)")
        print()
    if ceiling and seed:
        line = (f"The ceiling itself is {ceiling['rate'] / seed['rate']:.1f}× the seed's way (measured on the "
                f"first {seed['items']:,} items)")
        if ceiling.get("first_items") == seed["items"]:
            line += (f"; on those same first {seed['items']:,} items the ceiling ran at "
                     f"{ceiling['first_rate']:,.0f}/s, {ceiling['first_rate'] / seed['rate']:.1f}× the seed's way")
        print(line + ".")
        print()


def table(a):
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["target"], r["quant"]), []).append(r)
    for key, rs in groups.items():
        print_group(*key, rs)
    with open(a.json, "w") as f:
        json.dump([{"dataset": d, "target": t, "quant": q, "rows": rs} for (d, t, q), rs in groups.items()], f,
                  indent=1)


# --- command line -----------------------------------------------------------------------------


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def cmd(name, fn, source=False, vset=False, mil=False):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--dataset", default="gaussian")
        if source:
            p.add_argument("--port", type=int, required=True, help="FalkorDB port")
            p.add_argument("--graph", default="bench")
        if vset:
            p.add_argument("--redis-port", type=int, required=True)
            p.add_argument("--key", default="bench")
        if mil:
            p.add_argument("--milvus-port", type=int, required=True)
            p.add_argument("--collection", default="bench")
        return p

    def build(p):
        p.add_argument("--quant", choices=["noquant", "q8", "bin"], default="noquant")
        p.add_argument("--ef", type=int, help="VADD EF (build exploration factor)")
        p.add_argument("--m", type=int, help="VADD M (links per node)")

    p = cmd("generate", generate, source=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=200, help="items per UNWIND query")
    p = cmd("seed-vset", seed_vset, source=True, vset=True)
    build(p)
    p.add_argument("--items", type=int, default=2000, help="measure on the first ITEMS items")
    p = cmd("ceiling-vset", ceiling_vset, source=True, vset=True)
    build(p)
    p.add_argument("--cache", help="keep the items read from the graph in CACHE.npy / CACHE.ids.json")
    p.add_argument("--cas", action="store_true", help="VADD … CAS (candidate search off the main thread)")
    p.add_argument("--pipes", type=int, default=1, help="redis-cli --pipe connections at once")
    p.add_argument("--first", type=int, default=2000, help="also time the first FIRST items (the seed's way's)")
    p.add_argument("--redis-cli", default="redis-cli")
    p.add_argument("--workdir", help="where the command files go (default: the system's temp)")
    cmd("count-vset", count_vset, vset=True)
    cmd("cpu", cpu, vset=True)
    p = cmd("seed-milvus", seed_milvus, source=True, mil=True)
    p.add_argument("--items", type=int, default=2000, help="measure on the first ITEMS items")
    p = cmd("ceiling-milvus", ceiling_milvus, source=True, mil=True)
    p.add_argument("--cache", help="keep the items read from the graph in CACHE.npy / CACHE.ids.json")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--op", choices=["insert", "upsert"], default="insert")
    p = cmd("count-milvus", count_milvus, mil=True)
    p.add_argument("--drop", action="store_true", help="then drop the collection")
    p = cmd("ferry-row", ferry_row)
    p.add_argument("--report", required=True)
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--target", choices=["vset", "milvus"], required=True)
    p.add_argument("--name", default="ferry", help="the contender's name in the table")
    p.add_argument("--redis-port", type=int, help="the vector set's server, for its CPU seconds")
    p.add_argument("--cpu-before", help="`cpu`'s output before Ferry's run")
    build(p)
    p = sub.add_parser("table")
    p.set_defaults(fn=table)
    p.add_argument("results")
    p.add_argument("--json", required=True, help="where the JSON copy of the results goes")
    return ap


if __name__ == "__main__":
    args = parser().parse_args()
    args.fn(args)
