# Two commands that work on a fresh machine: `make demo` and `make test`.
#   make test                    torch 2.13.0 in .venv, the suite without its slow tier
#   make test-all                the whole suite, slow tier included (what .ci/run runs)
#   make test TORCH=2.15.0       the same against another supported torch, in .venv-2.15.0
#   make test TORCH=2.14.1 TESTS="tests/warm_start tests/install"
PYTHON ?= python3
DEFAULT_TORCH := 2.13.0
TORCH ?= $(DEFAULT_TORCH)
VENV := $(if $(filter $(DEFAULT_TORCH),$(TORCH)),.venv,.venv-$(TORCH))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTS ?= tests
# worksteal: a worker that runs out of tests takes some of the other's queue, so neither idles
# at the end while the other still has a row of slow fresh-process tests
PYTEST_ARGS ?= -n 2 --dist worksteal
# `make test` leaves out the tests marked slow (pyproject.toml); `make test-all` runs them.
MARKERS ?= not slow

.PHONY: demo test test-all bench clean

# torch pinned in every install: pyproject allows a range, and given one, pip replaces an
# installed CPU torch with the newest release it finds (a multi-GB CUDA build).
TORCH_PIN := torch==$(TORCH)
# pip on the project's machines is capped at the torch releases kept on their disk
# (/etc/xdg/pip); 2.15.0 comes from the registry, so its install alone lifts the cap.
PIP_ENV := $(if $(filter 2.15.0,$(TORCH)),PIP_CONSTRAINT=/dev/null,)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_ENV) $(PY) -m pip install --quiet $(TORCH_PIN)
	$(PIP_ENV) $(PY) -m pip install --quiet -e '.[test]' $(TORCH_PIN)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) bench/demo.py

# The store tests run a real redis-server on 127.0.0.1; install it once if it is missing
# (PRECOMPILE_SKIP_REDIS=1 skips both the install and those tests).
test: $(STAMP)
	@if [ "$${PRECOMPILE_SKIP_REDIS:-}" != 1 ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server (for tests/stores/test_backends.py)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	$(PY) -m pytest -q $(PYTEST_ARGS) -m "$(MARKERS)" --durations=25 $(TESTS)

test-all:
	$(MAKE) test MARKERS=

bench: $(STAMP)
	$(PIP_ENV) $(PY) -m pip install --quiet -e '.[bench]' $(TORCH_PIN)
	$(PY) -m bench

clean:
	rm -rf .venv .venv-*/ bench/results
