# netfabric — `make demo` and `make test` set everything up on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BOARD  ?= ulx3s-85f
FREQ   ?=
MODEL  ?=
SEEDS  ?=  # SEEDS=3: make bitstream places and routes with nextpnr seeds 1..3 (worst one decides)
JOBS   ?=  # JOBS=3: ... those seeds side by side (a core and a copy of the design in memory each)
V      ?=  # V=1: third-party warnings and tool output on the terminal, not in a log file

.PHONY: setup demo test test-all sim bitstream program deploy bench lint clean

$(STAMP): pyproject.toml setup.py requirements/base.txt requirements/sim.txt requirements/dev.txt requirements/finn.txt requirements/backends.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/base.txt -r requirements/sim.txt -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -r requirements/finn.txt
	$(BIN)/pip install -q --no-deps -r requirements/backends.txt
	$(BIN)/pip install -q --no-deps -e .
	@command -v iverilog >/dev/null || (command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq iverilog) >/dev/null 2>&1) || \
	  echo "note: Icarus Verilog (iverilog) not installed; Icarus tests will be skipped"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/netfabric $(if $(V),-v) demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

sim: $(STAMP)
	$(BIN)/python -m pytest -q -m sim

bitstream: $(STAMP)
	$(BIN)/netfabric $(if $(V),-v) bitstream $(if $(MODEL),--model $(MODEL)) --board $(BOARD) $(if $(FREQ),--freq $(FREQ)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(JOBS),--jobs $(JOBS))

program: $(STAMP)
	$(BIN)/netfabric $(if $(V),-v) program --board $(BOARD) $(if $(BITSTREAM),--bitstream $(BITSTREAM))

# PYNQ deployment package (make deploy BOARD=pynq-z2 [MODEL=mlp] [GRAPH=g.onnx] [OUT=dir])
deploy: $(STAMP)
	$(BIN)/netfabric $(if $(V),-v) deploy --board $(if $(filter file,$(origin BOARD)),pynq-z2,$(BOARD)) $(if $(GRAPH),--graph $(GRAPH),$(if $(MODEL),--model $(MODEL))) $(if $(OUT),--out $(OUT))

# every benchmark that needs no GPU, rerun from scratch (make bench SKIP="bnn_cnv" leaves some out)
bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(if $(SKIP),--skip $(SKIP))

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache
