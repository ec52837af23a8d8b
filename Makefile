# Developer entry points. scripts/test.sh stays the CI entry (`make` may be missing on a
# minimal Debian; every target here only calls what the scripts and the venv provide).
#
#   make                  this list
#   make unit ARGS=-x     extra pytest arguments for unit, e2e and test
#   make bench ARGS="--size-mib 256 --repeat 1"   extra arguments for bench and soak
#
# Targets that use the venv run scripts/bootstrap.sh first only when the venv is missing
# (no stamp that bootstrap writes after its pip install); `make bootstrap` runs it always.
# test and demo call bootstrap themselves.

VENV  := .venv
STAMP := $(VENV)/.s3shim-bootstrap
LINT  := s3shim testkit tests bench
ARGS  ?=

.DEFAULT_GOAL := help
.PHONY: help bootstrap lint typecheck unit e2e test bench soak demo

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Not phony: made only when missing.
$(STAMP):
	scripts/bootstrap.sh

bootstrap: ## install or update everything (Debian packages, .venv, npm); ~1 s when warm
	scripts/bootstrap.sh

lint: | $(STAMP) ## ruff check + ruff format --check (s3shim testkit tests bench)
	$(VENV)/bin/ruff check $(LINT)
	$(VENV)/bin/ruff format --check $(LINT)

typecheck: | $(STAMP) ## mypy --strict (config in pyproject.toml)
	$(VENV)/bin/mypy

unit: | $(STAMP) ## pure unit tests (tests/unit): no root, no stores, seconds
	$(VENV)/bin/pytest -q tests/unit $(ARGS)

e2e: | $(STAMP) ## end-to-end tests against real stores (tests/e2e): minutes
	$(VENV)/bin/pytest -q -ra tests/e2e $(ARGS)

test: ## the CI entry, scripts/test.sh: bootstrap, ruff, mypy, the whole pytest suite
	scripts/test.sh $(ARGS)

bench: | $(STAMP) ## bench/run.py with its defaults (1 GiB, 3 rounds, ~2 min; bench/README.md)
	$(VENV)/bin/python bench/run.py $(ARGS)

soak: | $(STAMP) ## bench/soak.py defaults (1000 ops, random seed); bench/SOAK.md: ARGS="--ops 10000 --seed 20261201"
	$(VENV)/bin/python -m bench.soak $(ARGS)

demo: ## scripts/demo.sh: Convex's call sequence fails on RGW, passes through s3shim
	scripts/demo.sh
