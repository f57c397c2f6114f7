# The project's task runner. README's two commands are `make run` and `make test`.
.PHONY: run demo test lint fmt bench build capture-example build-deps

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
