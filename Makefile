# twinedge: the entry points a person types.
#   make run    simulated PLCs -> edge gateway -> cloud, live summary; Ctrl-C stops
#               (options: make run RUN_ARGS='--machines 5 --cloud-port 9080'; see deploy/scripts/demo.py)
#   make test   sets everything up (virtualenv, system packages) and runs the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# the foreign OPC-UA server (node-opcua) that the OPC-UA interop tests and benchmark run as a PLC
OPCUA_SERVER := tests/interop/opcua_server
NODE_STAMP := $(OPCUA_SERVER)/node_modules/.installed-stamp
# the console's browser libraries (uPlot, three.js): npm tarballs pinned by SHA-256, unpacked by Python
CONSOLE_LIBS := cloud/console/static/vendor/.lock-sha256

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml deploy/scripts/system-deps.sh
	deploy/scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[edge,cloud,cad,train,process,dev]'
	# the ML benchmarks' real data sets ship inside these wheels; only the data files are read
	$(PY) -m pip install --quiet --no-deps 'river>=0.26.1' 'sktime>=1.2.0'
	touch $(STAMP)

# A Node.js older than the server needs: say so and install nothing (the interop tests then skip and say why).
$(NODE_STAMP): $(OPCUA_SERVER)/package.json $(OPCUA_SERVER)/package-lock.json deploy/scripts/system-deps.sh
	deploy/scripts/system-deps.sh
	@if why="$$(node $(OPCUA_SERVER)/check-node.mjs)"; then \
		cd $(OPCUA_SERVER) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed-stamp; \
	else echo "$$why: the OPC-UA tests against node-opcua will be skipped"; fi

$(CONSOLE_LIBS): cloud/console/vendor.json | $(STAMP)
	$(PY) -m cloud.console.vendor

install: $(STAMP) $(NODE_STAMP) $(CONSOLE_LIBS)

run: $(STAMP) $(CONSOLE_LIBS)
	$(PY) deploy/scripts/demo.py $(RUN_ARGS)

# One worker per core, a test file each at a time: most tests wait on real servers and processes.
test: install
	$(PY) -m pytest -q --numprocesses auto --dist loadfile

lint: install
	$(VENV)/bin/ruff check shared edge cloud twinsim tests bench
	$(VENV)/bin/mypy shared edge cloud twinsim

bench: install
	$(PY) bench/bench_mqtt_ingest.py
	$(PY) bench/bench_mqtt_ingest.py --sink model --only embedded
	$(PY) bench/bench_hostile_network.py
	$(PY) bench/bench_modbus.py
	$(PY) bench/bench_modbus.py --model
	$(PY) bench/bench_inference.py
	$(PY) bench/bench_opcua.py
	$(PY) bench/bench_opcua_field.py
	$(PY) bench/bench_mtconnect.py
	$(PY) bench/bench_footprint.py
	$(PY) bench/bench_footprint.py --model
	$(PY) bench/bench_cli.py
	$(PY) bench/bench_cloud_ingest.py
	$(PY) bench/bench_pg_partitions.py
	$(PY) bench/bench_cloud_query.py
	$(PY) bench/bench_cloud_api.py
	$(PY) bench/bench_dashboard.py --pg
	$(PY) bench/bench_catchup.py
	$(PY) bench/bench_sim.py
	$(PY) bench/bench_mtconnect_agent.py
	$(PY) bench/bench_physics.py
	$(PY) bench/bench_process.py
	$(PY) bench/bench_station.py
	$(PY) bench/bench_ml.py
	$(PY) bench/bench_vsensors.py
	$(PY) bench/bench_vsensor_state.py
	$(PY) bench/bench_console.py
	$(PY) bench/bench_harvester.py
	$(PY) bench/bench_programs.py

clean:
	rm -rf $(VENV) $(OPCUA_SERVER)/node_modules cloud/console/static/vendor run/ build/ dist/ *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
