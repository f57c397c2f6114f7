# The project's task runner. README's two commands are `make run` and `make test`.
.PHONY: run demo test lint fmt bench build replay-example

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

# The worked replay example: the committed sample recording against the demo's candidate build.
replay-example:
	scripts/replay-example.sh
