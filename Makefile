# sagepipe - every target bootstraps what it needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SAM_VENV := .venv-sam
SCAN_VENV := .venv-scan
NB_VENV := .venv-nb
PY := $(VENV)/bin/python
# sam build needs the Lambda runtime's Python (3.13) on PATH.
# (a pyenv shim may exist but not run, so each candidate is tried)
PY313 := $(shell for p in $$HOME/.pyenv/versions/3.13*/bin/python3.13 $$(command -v python3.13); do "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
export SAM_CLI_TELEMETRY := 0

.PHONY: help install demo test unit unit-quick twin lint lint-py format validate build deploy clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements/dev.txt requirements/sdk-registry.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -r requirements/sdk-registry.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# The notebook's venv: the sagemaker SDK and Jupyter (≈1.3 GB), kept out of .venv and `make demo`.
$(NB_VENV)/.installed: requirements/notebook.txt requirements/sdk-registry.txt pyproject.toml
	$(PYTHON) -m venv $(NB_VENV)
	$(NB_VENV)/bin/pip install --quiet --upgrade pip
	$(NB_VENV)/bin/pip install --quiet -r requirements/notebook.txt
	$(NB_VENV)/bin/pip install --quiet --no-deps -r requirements/sdk-registry.txt
	$(NB_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r requirements/sam.txt
	touch $@

$(SCAN_VENV)/.installed: requirements/scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet -r requirements/scan.txt
	touch $@

install: $(VENV)/.installed  ## create .venv with the pinned dev dependencies

demo: $(VENV)/.installed  ## the main job on the local twin, on the churn data
	$(VENV)/bin/sagepipe demo

test: lint build unit twin notebook  ## everything CI runs: lint, sam build, unit, twin and notebook tests

unit: $(VENV)/.installed  ## unit tests (no network, no servers)
	$(PY) -m pytest tests/unit -q

unit-quick: $(VENV)/.installed  ## unit tests without the slow ones (no model/train.py subprocess runs)
	$(PY) -m pytest tests/unit -q -m "not slow"

twin: $(VENV)/.installed  ## twin tests (real handlers, ASL, training and model servers on 127.0.0.1)
	$(PY) -m pytest tests/twin -q

notebook: $(NB_VENV)/.installed  ## execute notebooks/quickstart.ipynb top to bottom against a fresh twin
	$(NB_VENV)/bin/python -m pytest tests/notebook -q

lint: lint-py $(VENV)/.installed $(SAM_VENV)/.installed $(SCAN_VENV)/.installed  ## the Python gate, sam validate --lint, cfn-lint in every supported Region, cfn-lint-serverless, checkov, statelint
	for region in us-east-1 af-south-1 cn-north-1 us-gov-west-1; do $(SAM_VENV)/bin/sam validate --lint --region $$region || exit 1; done
	$(PY) scripts/gen_image_mappings.py --check
	$(VENV)/bin/cfn-lint --regions $$($(PY) scripts/gen_image_mappings.py --regions sklearn) -- template.yaml
	$(SCAN_VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(SCAN_VENV)/bin/checkov --config-file .checkov.yaml -f template.yaml
	$(PY) scripts/statelint_asl.py

lint-py: $(VENV)/.installed  ## ruff check, ruff format --check, mypy (config: pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: $(SAM_VENV)/.installed  ## sam build for python3.13
	@test -n "$(PY313)" || { echo "python3.13 is required for sam build (Lambda runtime python3.13)"; exit 1; }
	PATH="$$(dirname $(PY313)):$$PATH" $(SAM_VENV)/bin/sam build --build-dir .aws-sam/build

ENV ?= dev
deploy: build  ## sam build + sam deploy of samconfig.toml's ENV (dev|prod; REGION=... overrides the profile's)
	$(SAM_VENV)/bin/sam deploy --config-env $(ENV) $(if $(REGION),--region $(REGION))

clean:  ## remove build output and virtual environments
	rm -rf .aws-sam $(VENV) $(SAM_VENV) $(SCAN_VENV) .twin
