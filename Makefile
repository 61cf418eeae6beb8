# Ferry: the commands the README names. `make demo` and `make test` work on a fresh Debian 12
# machine with a Rust toolchain; both install what they need through scripts/setup.sh first.

CARGO ?= cargo

.PHONY: demo test test-setup bench-keys bench-tier bench-events bench-bridge eval-tier fmt clippy

## demo: set up, then run the keys, tier, events, bridge and vectors jobs end to end on throwaway servers
demo: test-setup
	$(CARGO) run -p ferry -- demo

## test: set up, check formatting, lint, and run the whole test suite
test: test-setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

## test-setup: install Redis, Python venv and build tools the tests and benchmarks need
test-setup:
	scripts/setup.sh

## bench-keys: end-to-end keys benchmark against the seed-style Python baselines (not a test;
##   `make bench-keys ARGS=--quick` skips the 2M-key memory run)
bench-keys:
	scripts/bench-keys $(ARGS)

## bench-tier: end-to-end tier benchmark (lexical and MiniLM) against a seed-style Python
##   migration (`make bench-tier ARGS=--quick` skips the million-caption memory run)
bench-tier:
	scripts/bench-tier $(ARGS)

## bench-events: events saved + published per second and save -> publish latency against the
##   seed's INSERT-then-PUBLISH (`make bench-events ARGS=--quick` for a shorter run)
bench-events:
	scripts/bench-events $(ARGS)

## bench-bridge: 1 KB messages Kafka → Stream against a confluent-kafka + XADD-per-message
##   baseline, then 720p frame re-encoding against Pillow (`make bench-bridge ARGS=--quick`)
bench-bridge:
	scripts/bench-bridge $(ARGS)

## bench-vectors: 384-d embeddings FalkorDB → Redis vector sets and Milvus Lite against the
##   servers' own insert ceilings and the seed's one-item-at-a-time Python (`make bench-vectors
##   ARGS="--count 5000 --datasets gaussian"` for a shorter run)
.PHONY: bench-vectors
bench-vectors:
	scripts/bench-vectors $(ARGS)

## eval-tier: grouping quality (reduction, purity, fragmentation) per similarity backend
eval-tier:
	scripts/eval-tier $(ARGS)

## fmt: format every crate
fmt:
	$(CARGO) fmt --all

## clippy: lint every crate and target, warnings are errors
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
