# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Real servers and clients the integration tests start as local processes, and the tools
# `make image` builds with (no Docker engine: mmdebstrap for the root filesystem, umoci and skopeo
# for the OCI archive; runc runs it under the tests' private containerd).
DEBIAN_PACKAGES := docker-registry containerd runc skopeo umoci prometheus redis-server nginx wrk util-linux iproute2 aria2 \
	podman mmdebstrap python3-venv
# What only the benchmarks drive: ApacheBench for bench/manifest_head.py, perf for `--profile`.
BENCH_DEBIAN_PACKAGES := apache2-utils linux-perf
# What the image is built from: it is rebuilt only when one of these changes.
IMAGE_SOURCES := pyproject.toml README.md packaging/image/build.sh \
	$(shell git ls-files oci registry_mirror nvme_cache p2p catalog http_limits 2>/dev/null)
IMAGE := dist/registry-mirror.oci.tar
# The wheels are built by the same Python release the image runs (Debian bookworm's).
IMAGE_BUILD_PYTHON ?= /usr/bin/python3

.PHONY: run test test-unit lint venv runtime-venv test-deps bench-deps bench dist image clean

# Runtime dependencies only: what `make run` (and a user's `pip install`) needs.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# The test extra on top: pytest, the model-hub clients, grpcio, ...
$(VENV)/.installed: $(VENV)/.runtime
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

runtime-venv: $(VENV)/.runtime

venv: $(VENV)/.installed

run: runtime-venv
	$(VENV)/bin/registry-mirror serve

# Installs only what is missing; Debian's maintainer scripts must not start system services,
# so a policy-rc.d that refuses is in place while apt runs.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; $$SUDO chmod +x /usr/sbin/policy-rc.d; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

test-deps:
	$(call install_missing,$(DEBIAN_PACKAGES))

bench-deps: test-deps
	$(call install_missing,$(BENCH_DEBIAN_PACKAGES))

test: test-deps venv
	$(PY) -m pytest -p no:cacheprovider -q $(PYTEST_ARGS)

# Tests that start no process (tests/conftest.py marks the others `integration`): under a minute.
test-unit: venv
	$(PY) -m pytest -p no:cacheprovider -q -m "not integration" $(PYTEST_ARGS)

# Lint, format and types, configured in pyproject.toml; .ci/run runs this before the tests.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: bench-deps venv
	$(PY) bench/run_all.py

# The wheel users install: `pip install dist/registry_mirror-$(VERSION)-py3-none-any.whl`.
dist: runtime-venv
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls -1 dist/*.whl

# An OCI archive (`ctr images import`, `skopeo copy oci-archive:`), tagged registry-mirror:$(VERSION).
image: $(IMAGE)

$(IMAGE): $(IMAGE_SOURCES)
	packaging/image/build.sh $(IMAGE_BUILD_PYTHON) $(VERSION) $@

clean:
	rm -rf $(VENV) build dist *.egg-info
