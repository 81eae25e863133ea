# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.example.yaml

.PHONY: run test lint typecheck unit docs setup test-deps clean lock lock-upgrade lock-check

run: setup
	$(BIN)/sipgate-auth-proxy --config $(CONFIG)

test: setup test-deps lock-check lint typecheck docs unit

setup: $(VENV)/.installed

# Only what the lock holds, checked against its hashes; the project itself without
# dependencies (they are all in the lock) and without build isolation (the locked
# setuptools builds it, nothing is fetched from a range). A changed lock makes the venv
# anew, so it never keeps a package the lock dropped.
$(VENV)/.installed: requirements/dev.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# uv.lock and its exports in requirements/ (scripts/lock.sh says which file is for what).
# After changing a dependency in pyproject.toml: keeps every pin that still fits.
lock: setup
	bash scripts/lock.sh

# The newest versions pyproject.toml's ranges allow; then `make test` and commit the lock
# with the list of what changed (CONTRIBUTING.md).
lock-upgrade: setup
	bash scripts/lock.sh --upgrade

# One line naming `make lock` when pyproject.toml and the lock disagree.
lock-check: setup
	bash scripts/lock.sh --check

# Peers the tests run for real (browser, IdP, Redis, nginx); idempotent.
test-deps:
	bash scripts/install-test-deps.sh
	bash scripts/install-packaging-deps.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

# The documentation site (mkdocs.yml, docs/) into build/site. --strict: a broken link or
# anchor, a page missing from the nav or an included file that is gone fails the build
# (never with -q: MkDocs then counts no warnings).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The reference pages in docs/reference/ and docs/config.schema.json, generated from the
# code (configuration schema, error tree, metrics registry); a test fails when they differ.
.PHONY: docs-reference
docs-reference: setup
	$(BIN)/python -m scripts.docs.reference

# The demo's flow as the docs show it (docs/images/*.png), remade with Playwright and
# Debian's Chromium against `make demo`'s stand-ins; rerun after changing those pages.
.PHONY: screenshots
screenshots: setup
	bash scripts/install-demo-deps.sh
	$(BIN)/python -m scripts.docs.screenshots

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Benchmark (issue 8): the proxy against the direct path and Apache + mod_auth_openidc,
# all on loopback (cleartext and TLS upstream), about nine minutes; prints the ratios and
# writes BENCHMARKS.md.
# `make bench BENCH_ARGS=--quick` for a two-minute smoke run (3 s steps, one round).
.PHONY: bench
bench: setup
	bash bench/install-deps.sh
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Packaging: the container image and the Helm chart (helm/, Dockerfile, deploy/).
.PHONY: packaging-deps packaging-test image image-test image-clean

# podman, buildah, runc and debootstrap from Debian; idempotent.
packaging-deps:
	bash scripts/install-packaging-deps.sh

# hadolint, helm lint/template + kubernetes-validate for every value set, the image test.
packaging-test: setup packaging-deps
	$(BIN)/pytest tests/test_packaging.py

# Build the image with podman (a local base image stands in for python:3.12-slim).
image: packaging-deps
	bash scripts/build-image.sh sipgate-auth-proxy:dev

# Build the image and run it as Kubernetes would (non-root, read-only root, /healthz).
image-test: setup packaging-deps
	$(BIN)/pytest tests/test_packaging.py -k image

# Remove the private podman storage (base image, layers) that the two above keep.
image-clean:
	SIPGATE_PODMAN_DIR=$${SIPGATE_PODMAN_DIR:-/var/tmp/sipgate-auth-proxy-podman}; \
	if [ -d "$$SIPGATE_PODMAN_DIR" ]; then \
	  . scripts/podman-env.sh && podman system reset --force >/dev/null 2>&1 || true; \
	  rm -rf "$$SIPGATE_PODMAN_DIR"; \
	fi

# The whole flow on this machine, no sipgate account needed (stand-ins for the login and
# the API, on loopback, in the foreground; Ctrl-C stops everything).
# `make demo DEMO_MODE=personal_access_token` or `DEMO_MODE=service` for the other modes.
DEMO_MODE ?= oauth2
DEMO_PORT ?= 8080
DEMO_ACCESS_TTL ?= 60
.PHONY: demo
demo: setup
	bash scripts/install-demo-deps.sh
	$(BIN)/python -m scripts.demo.run --mode $(DEMO_MODE) --port $(DEMO_PORT) --access-ttl $(DEMO_ACCESS_TTL)
