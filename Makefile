# Warden — every target installs what it needs and is fast when nothing changed.
#   make demo    run Warden end to end on the local runtime (real Neo4j + PostgreSQL, moto for AWS)
#   make test    the whole test suite
#   make synth   synthesize the CDK app (cdk.out/), cdk-nag checks on
#   make lint    ruff + mypy + cfn-lint
#   make bench   the benchmarks in tests/perf at full size (`make test` runs them tiny)

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12 (the Lambda runtime); pyenv's where the machine has it. 3.11 also works for the code.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null) $(shell command -v python3 2>/dev/null))
VENV := .venv
PY := $(VENV)/bin/python
BUILD := .build

# jsii (under aws-cdk-lib) needs a supported Node; the machine's may be end-of-life. Node 22 from npm.
NODE_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)
NODE_BIN := $(abspath $(BUILD)/node/node_modules/node-linux-$(NODE_ARCH)/bin)
export PATH := $(NODE_BIN):$(abspath $(VENV)/bin):$(PATH)
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

VENV_STAMP := $(VENV)/.installed
NODE_STAMP := $(NODE_BIN)/node
NEO4J_STAMP := local/neo4j_launcher/target/.built
LAYER_STAMP := $(BUILD)/layers/.built

.PHONY: help venv node java neo4j layers demo test test-unit synth lint bench clean

help:
	@sed -n '2,7p' Makefile | sed 's/^# *//'

$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e .
	@touch $@

venv: $(VENV_STAMP)

$(NODE_STAMP):
	mkdir -p $(BUILD)/node
	cd $(BUILD)/node && npm install --no-save --no-audit --no-fund --silent node-linux-$(NODE_ARCH)@22
	@$(NODE_BIN)/node --version

node: $(NODE_STAMP)

# Java 17 and Maven build the Neo4j launcher; installed from Debian's packages where missing (as root).
java:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven; \
	  else echo "Java 17 and Maven are needed: install openjdk-17-jdk-headless and maven" >&2; exit 1; fi; }

# Neo4j 5.26 Community and the launcher, from Maven Central (skipped when up to date).
neo4j: $(VENV_STAMP) java
	$(PY) -m local.neo4j build

# The third-party dependency layer, built for Lambda (arm64) with pip --platform, no Docker.
layers: $(VENV_STAMP)
	$(PY) -m infra.layers

demo: $(VENV_STAMP) $(NODE_STAMP) neo4j
	$(VENV)/bin/warden demo

test: $(VENV_STAMP) $(NODE_STAMP) neo4j layers
	$(PY) -m pytest

test-unit: $(VENV_STAMP)
	$(PY) -m pytest tests/unit

synth: $(VENV_STAMP) $(NODE_STAMP) layers
	$(PY) app.py
	@ls -1 cdk.out/*.template.json

lint: $(VENV_STAMP) synth
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

bench: $(VENV_STAMP) neo4j
	WARDEN_BENCH_SIZE=full $(PY) -m pytest tests/perf -s -p no:cacheprovider --override-ini="addopts=" --timeout=7200

clean:
	rm -rf cdk.out $(BUILD)/layers local/neo4j_launcher/target
