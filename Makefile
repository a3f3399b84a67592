# Two commands for a fresh machine: `make run` and `make test` (see README.md).
# Each target builds what it needs first; nothing has to be installed by hand.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# The environment is cached outside the clone, keyed by the dependency lists in pyproject.toml, so a new clone
# (or CI) on the same machine reuses it instead of reinstalling torch; a new machine builds it.
VENV_CACHE_ROOT ?= $(HOME)/.cache/returns-inspection
VENV_KEY := $(shell $(PYTHON) -c 'import hashlib,json,sys,tomllib; p=tomllib.load(open("pyproject.toml","rb"))["project"]; deps=json.dumps([p["dependencies"],p["optional-dependencies"]],sort_keys=True); print(hashlib.sha256(deps.encode()).hexdigest()[:16] + "-py%d%d" % sys.version_info[:2])')
VENV_CACHED := $(VENV_CACHE_ROOT)/venv-$(VENV_KEY)
BIN := $(VENV)/bin
API_PORT ?= 8000
UI_PORT ?= 8501
PORTAL_PORT ?= 8502

.PHONY: venv run test lint format bench soak models clean-venv

venv:
	@if [ ! -x "$(VENV_CACHED)/bin/python" ] || [ ! -f "$(VENV_CACHED)/.complete" ]; then \
	  echo ">> building the environment in $(VENV_CACHED) (first time only: a few minutes)"; \
	  rm -rf "$(VENV_CACHED)" && mkdir -p "$(VENV_CACHE_ROOT)" && \
	  $(PYTHON) -m venv "$(VENV_CACHED)" && \
	  "$(VENV_CACHED)/bin/pip" install -q --upgrade pip setuptools wheel && \
	  "$(VENV_CACHED)/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 && \
	  "$(VENV_CACHED)/bin/pip" install -q ".[train,ui,dev]" && \
	  "$(VENV_CACHED)/bin/pip" uninstall -q -y returns-inspection && \
	  touch "$(VENV_CACHED)/.complete"; \
	fi
	@if [ "$$(readlink $(VENV) 2>/dev/null)" != "$(VENV_CACHED)" ]; then rm -rf $(VENV); ln -s "$(VENV_CACHED)" $(VENV); fi
	@# The cached environment is shared by clones: point its editable install at this clone.
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || $(BIN)/pip install --no-deps --no-build-isolation -e .

run: venv
	@mkdir -p var
	$(BIN)/inspection init-db --demo
	@echo ">> API  http://127.0.0.1:$(API_PORT)/docs   station UI http://127.0.0.1:$(UI_PORT)   customer portal http://127.0.0.1:$(PORTAL_PORT)"
	@trap 'kill 0' EXIT INT TERM; \
	  $(BIN)/inspection serve --host 127.0.0.1 --port $(API_PORT) & \
	  $(BIN)/streamlit run station_ui/station_app.py --server.port $(UI_PORT) --server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false & \
	  $(BIN)/streamlit run station_ui/portal_app.py --server.port $(PORTAL_PORT) --server.address 127.0.0.1 --server.headless true --browser.gatherUsageStats false & \
	  wait

test: venv
	@# Chromium for the browser test comes from Debian; where it cannot be installed the test skips.
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo ">> chromium not installed: browser tests will skip"; }
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy inspection training station_ui

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m benchmarks.run

soak: venv
	$(BIN)/python -m benchmarks.soak

# Rebuilds the bundled grader and detector from synthetic data (the commands their cards quote),
# promotes them into models/ as the next version and quantises the grader to models/grader-int8.
# CPU: tens of minutes to hours.
models: venv
	nice -n 10 $(BIN)/training synth --out var/data/synthetic --n 3000 --seed 0 --size 320
	nice -n 10 $(BIN)/training train-grader --data var/data/synthetic --out runs/grader_synth_224 --epochs 6 --size 224 --batch-size 32 --lr 0.003 --freeze-blocks 11
	nice -n 10 $(BIN)/training train-detector --data var/data/synthetic --out runs/detector_synth --model yolo26n.yaml --epochs 60 --imgsz 320 --batch 16 --hours 0.75
	nice -n 10 $(BIN)/training train-detector --data var/data/synthetic --out runs/detector_synth_cont --model runs/detector_synth/model.pt --epochs 6 --imgsz 256 --batch 16 --hours 0.42
	$(BIN)/training promote runs/grader_synth_224 --to models
	$(BIN)/training quantize --model models/grader --calibration var/data/synthetic/images/train --out models/grader-int8 --evaluate-on var/data/synthetic
	$(BIN)/training promote runs/detector_synth_cont --to models --name detector

clean-venv:
	rm -rf $(VENV) "$(VENV_CACHED)"
