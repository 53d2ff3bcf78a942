# twinedge: the entry points a person types.
#   make run    simulated PLCs -> edge gateway (embedded defaults), live summary; Ctrl-C stops
#   make test   sets everything up (virtualenv, system packages) and runs the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml deploy/scripts/system-deps.sh
	deploy/scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[edge,cloud,cad,dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) deploy/scripts/demo.py

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check shared edge cloud tests bench
	$(VENV)/bin/mypy shared edge cloud

bench: install
	$(PY) bench/bench_mqtt_ingest.py
	$(PY) bench/bench_hostile_network.py
	$(PY) bench/bench_modbus.py
	$(PY) bench/bench_opcua.py
	$(PY) bench/bench_footprint.py
	$(PY) bench/bench_cloud_ingest.py
	$(PY) bench/bench_cloud_query.py
	$(PY) bench/bench_cloud_api.py
	$(PY) bench/bench_catchup.py
	$(PY) bench/bench_sim.py
	$(PY) bench/bench_physics.py

clean:
	rm -rf $(VENV) run/ .pytest_cache .mypy_cache .ruff_cache
