# Two entry points a fresh machine needs: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/vtcodec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test]"
	touch $@

.PHONY: setup demo test bench
setup: $(BIN)/vtcodec

demo: $(BIN)/vtcodec
	$(BIN)/vtcodec demo

test: $(BIN)/vtcodec
	$(BIN)/python -m pytest

bench: $(BIN)/vtcodec
	$(BIN)/vtcodec bench --ratio 1024 --json out/bench.json --plot out/rd.png
