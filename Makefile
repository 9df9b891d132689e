# Everything from nothing: `make run` and `make test` create .venv, install the package
# (torch from the machine's local wheels where pip is capped there), and Debian's
# Fashion-MNIST when apt-get is available.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adaxbench-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The main job: Adam vs AdaX on real Fashion-MNIST (3 epochs each), then their report.
RUN_ARGS ?= -m task=fmnist_mlp optimizer=adam,adax trainer.epochs=3 hydra.sweep.dir=runs/demo

.PHONY: install data browser slurm docs run test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23" setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# Real data: Debian's dataset-fashion-mnist (IDX .gz files in /usr/share/datasets/fashion-mnist).
data:
	@if [ -f $(FMNIST) ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq >/dev/null && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else echo "no apt-get: put Fashion-MNIST under data/ or pass data.download=true"; fi

# Headless Chromium for tests/test_report_browser.py (report.html in a real browser); the test
# skips with a reason where it is missing.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian package chromium (headless browser for the report.html test)"; \
	  $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq >/dev/null && $(SUDO) apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: tests/test_report_browser.py will be skipped"; \
	else echo "no apt-get: install Chromium to run tests/test_report_browser.py"; fi

# A real single-node SLURM for tests/test_slurm.py (started by the tests themselves, as root):
# munge, slurmctld, slurmd, slurmdbd + MariaDB (submitit follows jobs with sacct).
SLURM_PKGS := slurmd slurmctld slurmdbd slurm-client munge mariadb-server
slurm:
	@if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "installing Debian packages $(SLURM_PKGS)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SLURM_PKGS) >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq >/dev/null && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SLURM_PKGS) >/dev/null; }; \
	else echo "no apt-get: the SLURM tests will be skipped"; fi

run: install data
	$(BIN)/adaxbench run $(RUN_ARGS)
	$(BIN)/adaxbench report runs/demo --out runs/demo/report

# The docs site must build without a warning (a broken link, a missing page, an undescribed config key);
# not --quiet: it hides the warnings from --strict too.
# Two workers on two cores, a file per worker at a time (a file's module fixtures are built once);
# each worker's torch keeps to one thread (tests/conftest.py).
test: install data browser slurm docs
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

bench: install data
	$(BIN)/python scripts/bench_runner.py
	$(BIN)/python scripts/bench_optim.py
	$(BIN)/python scripts/bench_report.py
	$(BIN)/python scripts/bench_sweep.py
	$(BIN)/python scripts/bench_pack_step.py
	$(BIN)/python scripts/bench_launchers.py

clean:
	rm -rf $(VENV) runs/demo .pytest_cache site
