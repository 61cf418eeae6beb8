"""Helpers of scripts/bench-bridge-frames: the test frames, and the Pillow baseline on them.

    bench_bridge_frames.py generate DIR [--frames N] [--seed S]
    bench_bridge_frames.py measure DIR [--repeat R] [--conversions a,b,...]

`generate` writes N 1280x720 frames (a gradient scene with shapes, blended with random bytes,
so neither flat nor pure noise; deterministic for a seed) as frame_NNNN.png, .rgb (raw RGB8)
and .jpg (JPEG quality 95), and manifest.json with the size and count.

`measure` times what the bridge does to a frame, with Pillow on one core (the process is
pinned to one CPU): decode the input where it is encoded, encode the output. Inputs are read
into memory first; the first frame of each conversion is a warm-up and is not timed; the set
is converted R times (default 1). Prints JSON: per conversion frames, the best wall time and
the best CPU time of the thread (time.thread_time) with their frames per second, bytes in
and out.
"""

import argparse
import io
import json
import os
import random
import sys
import time

try:
    from PIL import Image, ImageDraw, features
except ImportError:
    sys.exit("bench_bridge_frames.py: Pillow is missing: .venv/bin/pip install pillow")

WIDTH, HEIGHT = 1280, 720
# Name → (input file suffix, output format, quality).
CONVERSIONS = {
    "png_jpeg85": ("png", "JPEG", 85),
    "raw_jpeg85": ("rgb", "JPEG", 85),
    "jpeg_jpeg85": ("jpg", "JPEG", 85),
    "raw_webp80": ("rgb", "WEBP", 80),
}


def scene(rng):
    """A gradient with rectangles and discs, mixed 30 % with random bytes."""
    gx = Image.linear_gradient("L").rotate(90).resize((WIDTH, HEIGHT))
    gy = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    base = Image.merge("RGB", (gx, gy, Image.blend(gx, gy, 0.5)))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        w, h = rng.randrange(20, WIDTH // 4), rng.randrange(20, HEIGHT // 4)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.ellipse((x, y, x + h, y + h), fill=colour)
    noise = Image.frombytes("RGB", (WIDTH, HEIGHT), rng.randbytes(WIDTH * HEIGHT * 3))
    return Image.blend(base, noise, 0.3)


def generate(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(args.seed)
    for i in range(args.frames):
        image = scene(rng)
        stem = os.path.join(args.dir, f"frame_{i:04d}")
        image.save(stem + ".png")
        image.save(stem + ".jpg", quality=95)
        with open(stem + ".rgb", "wb") as f:
            f.write(image.tobytes())
    manifest = {"width": WIDTH, "height": HEIGHT, "frames": args.frames, "seed": args.seed}
    with open(os.path.join(args.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    print(json.dumps(manifest))


def convert(data, suffix, fmt, quality, size):
    if suffix == "rgb":
        image = Image.frombytes("RGB", size, data)
    else:
        image = Image.open(io.BytesIO(data))
        if image.mode != "RGB":
            image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt, quality=quality)
    return out.getbuffer().nbytes


def measure(args):
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    size = (manifest["width"], manifest["height"])
    names = args.conversions.split(",") if args.conversions else list(CONVERSIONS)
    results = {}
    for name in names:
        suffix, fmt, quality = CONVERSIONS[name]
        inputs = []
        for i in range(manifest["frames"]):
            with open(os.path.join(args.dir, f"frame_{i:04d}.{suffix}"), "rb") as f:
                inputs.append(f.read())
        convert(inputs[0], suffix, fmt, quality, size)
        wall = cpu = float("inf")
        for _ in range(args.repeat):
            bytes_out = 0
            start, cpu_start = time.perf_counter(), time.thread_time()
            for data in inputs:
                bytes_out += convert(data, suffix, fmt, quality, size)
            wall = min(wall, time.perf_counter() - start)
            cpu = min(cpu, time.thread_time() - cpu_start)
        results[name] = {
            "frames": len(inputs),
            "seconds": wall,
            "fps": len(inputs) / wall,
            "cpu_seconds": cpu,
            "fps_cpu": len(inputs) / cpu,
            "bytes_in": sum(len(d) for d in inputs),
            "bytes_out": bytes_out,
        }
        del inputs
    report = {
        "tool": "pillow",
        "version": Image.__version__,
        "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "threads": 1,
        "repeat": args.repeat,
        "conversions": results,
    }
    print(json.dumps(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir")
    g.add_argument("--frames", type=int, default=200)
    g.add_argument("--seed", type=int, default=4)
    m = sub.add_parser("measure")
    m.add_argument("dir")
    m.add_argument("--conversions", default="")
    m.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    {"generate": generate, "measure": measure}[args.command](args)


if __name__ == "__main__":
    main()
