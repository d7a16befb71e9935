# obmin developer commands. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config/example/gateway.yaml
PROVIDER_PORT ?= 8090

.PHONY: install run test lint typecheck pytest demo pki bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Development PKI under var/pki, created once: CA, gateway key, the example client's key.
# Keys are encrypted at rest with a random passphrase kept in var/pki-passphrase (mode 0600,
# made once); the example gateway settings read it (keys.passphrase_file).
PASSPHRASE_FILE := var/pki-passphrase
PKI := --dir var/pki --passphrase-file $(PASSPHRASE_FILE)

pki: install
	@mkdir -p var
	@test -s $(PASSPHRASE_FILE) || (umask 077 && $(BIN)/python -c \
		'import secrets; print(secrets.token_urlsafe(32))' > $(PASSPHRASE_FILE))
	@chmod 600 $(PASSPHRASE_FILE)
	@test -f var/pki/ca/ca.crt || $(BIN)/obmin pki init $(PKI)
	@test -f var/pki/gateway/log.key || $(BIN)/obmin pki log-key $(PKI)
	@test -f var/pki/members/12345678/sign.crt || $(BIN)/obmin pki issue-member \
		SEVDEIR-TEST/GOV/12345678 --name "Ministry of Social Policy" $(PKI)

# Start the example provider service and the gateway on the embedded defaults.
run: pki
	@mkdir -p var
	@$(BIN)/obmin example-provider --port $(PROVIDER_PORT) & echo $$! > var/example-provider.pid; \
	trap 'kill $$(cat var/example-provider.pid 2>/dev/null) 2>/dev/null; rm -f var/example-provider.pid' EXIT INT TERM; \
	$(BIN)/obmin serve -c $(CONFIG)

# Send one signed request to a running gateway (`make run` in another terminal).
demo: pki
	$(BIN)/obmin demo -c $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/obmin bench soap
	$(BIN)/obmin bench rest-large-body
	$(BIN)/obmin bench audit-append
	$(BIN)/obmin bench registry-load

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
