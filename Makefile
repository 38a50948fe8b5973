# Two commands do all the set-up on a fresh machine:
#   make run   - install, migrate the embedded SQLite database, create demo data, serve on :8000
#   make test  - install with test extras and run the whole suite
#   make bench - load-test a real server with wrk, results in docs/performance.md
#   make mutate - mutation testing of authserver/services and authserver/oauth2 (hours;
#                 docs/testing.md); make mutate-estimate N=150 - a random sample of them
#                 with a confidence interval (about an hour); make mutate-sample - CI's 30
#                 mutants (minutes)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_OUTPUT ?= docs/performance.md
export AUTHSERVER_INSTANCE_PATH ?= $(CURDIR)/instance

.PHONY: run test install lint clean bench translations messages mutate mutate-sample mutate-estimate mutation-session

# Compiled message catalogs (.mo) are build products: made from the .po files here,
# and by the wheel build (hatch_build.py).
PO_FILES := $(wildcard translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project definition changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

translations: $(MO_FILES)

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po | $(VENV)/.installed
	$(BIN)/pybabel -q compile -i $< -o $@

# After changing texts in templates or code: refresh messages.pot and every .po,
# then translate the new entries (tests/i18n fail until every language has them).
messages: $(VENV)/.installed
	$(BIN)/pybabel -q extract -F babel.cfg -k lazy_gettext --sort-output --no-wrap \
		--project authserver -o translations/messages.pot .
	$(BIN)/pybabel -q update -i translations/messages.pot -d translations --no-wrap \
		--ignore-obsolete

# The issuer follows HOST and PORT (an IPv6 host gets brackets; a wildcard address
# is reached on 127.0.0.1), unless AUTHSERVER_ISSUER is set in the environment.
ISSUER_HOST = $(if $(filter 0.0.0.0 :: [::],$(HOST)),127.0.0.1,$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST)))
run: export AUTHSERVER_ISSUER ?= http://$(ISSUER_HOST):$(PORT)

run: $(VENV)/.installed translations
	$(BIN)/authserver db upgrade
	$(BIN)/authserver demo
	$(BIN)/authserver serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(VENV)/.installed-test translations
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# CI's fixed sample of 30 mutants of services/tokens.py: every one must be killed.
mutate-sample: $(VENV)/.installed-test translations
	$(BIN)/python -m tests.mutation.sample

# Mutation testing with cosmic-ray (the `mutation` extra). 1) record which test runs
# which line (per-test coverage contexts), 2) keep a pristine copy to find each mutant's
# line, 3) list the mutants and skip the ones equivalent by construction (inside type
# annotations and docstrings) or that do not compile, 4) mutate and run only the
# covering tests, 5) report the score and survivors. Long jobs: run under `nice`.
# MUTATE_TESTS narrows the suite that builds the coverage map.
MUTATE_TESTS ?= tests/unit tests/http tests/cli
# mutate-estimate: how many mutants the uniform random sample keeps, and its seed.
N ?= 150
SEED ?= 19
# The machine is shared: the long steps run at a lower priority.
NICE ?= nice -n 10
mutation-session: $(VENV)/.installed-test translations
	$(BIN)/python -m pip install --quiet -e '.[test,mutation]'
	rm -rf .mutation && mkdir -p .mutation/pristine
	cp -r --parents authserver/services authserver/oauth2 .mutation/pristine/
	COVERAGE_FILE=.mutation/coverage $(NICE) $(BIN)/python -m pytest -q -p no:randomly \
		--cov=authserver.services --cov=authserver.oauth2 --cov-context=test \
		--cov-report= $(MUTATE_TESTS)
	$(BIN)/cosmic-ray init tests/mutation/cosmic-ray.toml .mutation/session.sqlite
	$(BIN)/python -m tests.mutation.filter_annotations .mutation/session.sqlite

mutate: mutation-session
	$(NICE) $(BIN)/cosmic-ray exec tests/mutation/cosmic-ray.toml .mutation/session.sqlite
	$(BIN)/python -m tests.mutation.estimate report .mutation/session.sqlite
	$(BIN)/cr-report --surviving-only --show-diff .mutation/session.sqlite

mutate-estimate: mutation-session
	$(BIN)/python -m tests.mutation.estimate sample .mutation/session.sqlite $(N) --seed $(SEED)
	$(NICE) $(BIN)/cosmic-ray exec tests/mutation/cosmic-ray.toml .mutation/session.sqlite
	$(BIN)/python -m tests.mutation.estimate report .mutation/session.sqlite
	$(BIN)/cr-report --surviving-only --show-diff .mutation/session.sqlite

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	$(BIN)/python -m ruff check authserver tests bench examples migrations
	$(BIN)/python -m ruff format --check authserver tests bench examples migrations
	$(BIN)/python -m mypy authserver tests

# Load-test a real `authserver serve` with wrk (apt-get install wrk) and rewrite the
# generated part of $(BENCH_OUTPUT); e.g. make bench BENCH_ARGS='--db both'.
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py --output $(BENCH_OUTPUT) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance dist build .pytest_cache test-output .mutation $(MO_FILES)
