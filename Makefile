# Every target installs what it needs (a .venv from pyproject.toml) the first time, with uv (resolves and
# installs the ~150 packages in parallel: about 1.5 minutes on a fresh machine instead of pip's 5; pip if uv fails).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)
PORT ?= 8787
STAGE ?= dev

.PHONY: install run test lint unit integration infra e2e synth deploy bench mutate emails system-deps clean

.venv/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q uv
	.venv/bin/uv pip install -q --python $(PY) -e '.[dev]' || $(PIP) install -q -e '.[dev]'
	@touch $@

install: .venv/.installed

run: install
	$(PY) -m local.main --port $(PORT) $(if $(DEMO),--demo $(DEMO))

lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy layers/common/python/retention functions infra local cli --ignore-missing-imports

test: install system-deps lint
	.venv/bin/pytest -n 2 --dist loadfile tests

unit: install
	.venv/bin/pytest tests/unit

integration: install
	.venv/bin/pytest tests/integration

infra: install
	.venv/bin/pytest tests/infra

e2e: install
	.venv/bin/pytest tests/e2e

synth: install
	CDK_OUTDIR=cdk.out $(PY) -m infra.app
	.venv/bin/cfn-lint cdk.out/*.template.json

# Real deployment: needs AWS credentials, a bootstrapped account (npx cdk bootstrap) and a verified
# SES identity for the sender. Context: -c stage=prod -c senderEmail='Shop <news@shop.example>' ...
deploy: install
	npx --yes aws-cdk@2 deploy --app "$(PY) -m infra.app" -c stage=$(STAGE) $(CDK_ARGS)
	@./retention dns --stack Retention-$(STAGE) || true
	@echo "Next: ./retention bootstrap --stack Retention-$(STAGE) --name $$USER   (README: Deploy to your AWS account)"

# Debian packages some checks use: SpamAssassin (email scores) and Chromium (screenshots, browser tests).
# Installed when missing and we are root (CI, this machine); otherwise say how.
system-deps:
	@command -v spamassassin >/dev/null && command -v chromium >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then (apt-get install -y -qq spamassassin chromium >/dev/null 2>&1 || \
	      (apt-get update -qq >/dev/null && apt-get install -y -qq spamassassin chromium >/dev/null)); \
	    else echo "install spamassassin and chromium (Debian packages) for the email checks"; fi; }

# Every template in both locales as the customer sees it: HTML, MIME, screenshots at 600/360 px and a
# SpamAssassin score each (build/emails/index.html); fails when one breaks a structural check or scores > 1.0.
emails: install system-deps
	$(PY) -m local.emails --out build/emails

bench: install
	$(PY) -m bench.run

# Mutation testing (cosmic-ray) of the critical modules against targeted test subsets; not part of `make test`.
# MUTATE_BUDGET=N mutants per module (sampled, seeded; 0 = all), ONLY=engine,tokens,... to pick modules.
mutate: install
	$(PY) -m bench.mutate $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache
