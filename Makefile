# Two commands that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

# torch pinned in every install: pyproject allows a range, and given one, pip replaces an
# installed CPU torch with the newest release it finds (a multi-GB CUDA build).
TORCH := torch==2.13.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]' $(TORCH)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) bench/demo.py

# The store tests run a real redis-server on 127.0.0.1; install it once if it is missing
# (PRECOMPILE_SKIP_REDIS=1 skips both the install and those tests).
test: $(STAMP)
	@if [ "$${PRECOMPILE_SKIP_REDIS:-}" != 1 ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server (for tests/test_backends.py)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]' $(TORCH)
	$(PY) -m bench

clean:
	rm -rf $(VENV) bench/results
