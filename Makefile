# The README's two commands. `make test` is what CI (.ci/run) runs on a fresh clone.

CARGO ?= cargo

.PHONY: demo test test-deps build-deps speech-deps fuzz bench benchmarks

## The emulator and the example bots (callbot demo); Ctrl-C stops it.
demo: build-deps speech-deps
	$(CARGO) run --release -- demo

## Install what the tests need, then formatting, lints and the whole test suite.
test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

## Build tools: cargo, and cmake for the bundled libopus.
build-deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }

## Speech for scripts' call.say(): espeak-ng.
speech-deps:
	@command -v espeak-ng >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng; }

## Test tools: rustfmt, clippy, Debian's Chromium (browser tests), nats-server (campaigns),
## coturn (media relayed through TURN) and espeak-ng (speech).
test-deps: build-deps speech-deps
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@test -x /usr/lib/chromium/chromium && command -v nats-server >/dev/null \
		&& command -v turnserver >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nats-server coturn; }

## A long fuzz run of the frame decoders and the config loader (FUZZ_ITERATIONS, FUZZ_SEED).
fuzz:
	FUZZ_ITERATIONS=$${FUZZ_ITERATIONS:-10000000} $(CARGO) test --release --test fuzz -- --ignored --nocapture

## The cargo benchmarks of BENCHMARKS.md (media engine, emulator bridging, call setup).
bench: build-deps
	$(CARGO) bench

## The side-by-side tables of BENCHMARKS.md (callbot, aiortc, Chromium; then the ramp), as
## Markdown in target/bench/.
benchmarks: build-deps
	$(CARGO) build --release
	mkdir -p target/bench
	target/release/callbot bench --calls 50 --calls 200 --compare --markdown --json target/bench/compare.json | tee target/bench/compare.md
	target/release/callbot bench --ramp --ramp-step 100 --markdown --json target/bench/ramp.json | tee target/bench/ramp.md
