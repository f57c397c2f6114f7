# The project's task runner. README's two commands are `make run` and `make test`.
.PHONY: run demo test lint fmt bench build fuzz replay-example

build:
	cargo build --release --locked

# The main job on its embedded defaults: the self-contained demo.
run demo:
	cargo run --release --locked -- demo $(ARGS)

# Installs what the tests need, then fmt check, clippy -D warnings and every test.
test:
	scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	cargo bench --locked --bench compare

# Every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each, one at a time (nightly and cargo-fuzz;
# see README, "Fuzzing"): `make fuzz FUZZ_SECONDS=600`.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# The worked replay example: the committed sample recording against the demo's candidate build.
replay-example:
	scripts/replay-example.sh
