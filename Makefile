# Two commands for a newcomer: `make run` and `make test`. Each sets up .venv first.
VENV := .venv
BIN := $(VENV)/bin
# The store tests run on SQLite and on PostgreSQL: DATABASE_URL's when it is set, else one
# the tests start themselves (pgserver), so no system database is needed.

.PHONY: setup run test test-fast lint

setup: $(VENV)/.installed

# pip's own output goes to a log; it is shown only when the install fails.
$(VENV)/.installed: pyproject.toml
	@echo "Setting up $(VENV) (pip's output: $(VENV)/install.log)"
	@python3 -m venv $(VENV)
	@{ $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[test]'; } \
		> $(VENV)/install.log 2>&1 || { tail -n 30 $(VENV)/install.log; exit 1; }
	@touch $@

run: setup
	@$(BIN)/dunning worker --demo --serve

test: setup
	$(BIN)/pytest

# The pure tier alone (the policy core, readers, templates): seconds, no servers.
test-fast: setup
	$(BIN)/pytest -m pure -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
