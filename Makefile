# The README's two commands. `make test` is what CI (.ci/run) runs on a fresh clone.

CARGO ?= cargo

.PHONY: test test-deps build-deps fuzz

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

test-deps: build-deps
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

## A long fuzz run of the frame decoders and the config loader (FUZZ_ITERATIONS, FUZZ_SEED).
fuzz:
	FUZZ_ITERATIONS=$${FUZZ_ITERATIONS:-10000000} $(CARGO) test --release --test fuzz -- --ignored --nocapture
