# The project's task runner. README's two commands are `make run` and `make test`.
.PHONY: run demo test lint fmt bench build fuzz replay-example capture-example capture-compare-example build-deps

# The binary links libpcap (`shadowdiff capture`): Debian's libpcap-dev, installed when missing.
build-deps:
	scripts/install-build-deps.sh

build: build-deps
	cargo build --release --locked

# The main job on its embedded defaults: the self-contained demo.
run demo: build-deps
	cargo run --release --locked -- demo $(ARGS)

# README's worked example of `shadowdiff capture`: the demo's recorded traffic, then a crafted
# capture with a lost segment (no root needed: files, not an interface).
capture-example: build-deps
	cargo run --release --locked -- capture --pcap sample-traffic/capture/demo-lo.pcap --port 45003
	cargo run --release --locked -- capture --pcap sample-traffic/capture/gap.pcap --port 8080

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

# README's worked comparison of captured traffic: the demo's capture against the demo's candidate
# build (--candidate, --secondary), recorded (--record), then the recording replayed and gated.
capture-compare-example: build-deps
	scripts/capture-compare-example.sh
