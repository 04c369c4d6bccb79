# Switchboard: `make run` to start, `make test` to test. Both install what they need first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstalls only when the files it installs from change.
STAMP  := $(VENV)/.installed

.PHONY: install run test bench soak lint clean browser mailserver

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The CPU build of PyTorch first: a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The embedded store is brought to this release's schema first (a server refuses an older one).
run: install
	$(BIN)/switchboard db upgrade
	$(BIN)/switchboard run

test: install browser mailserver
	$(BIN)/python -m pytest

# Debian's Chromium for the end-to-end browser test, installed where apt can; elsewhere that test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser test ..."; \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	    echo "Could not install chromium: the browser test will be skipped."; \
	  else echo "No chromium and no apt as root: the browser test will be skipped."; fi; }

# Debian's Dovecot, which the email channel's tests start as their IMAP server; elsewhere they are skipped.
mailserver:
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's dovecot-imapd for the email tests ..."; \
	    apt-get install -y -q dovecot-imapd >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dovecot-imapd >/dev/null 2>&1; } || \
	    echo "Could not install dovecot: the email tests that need IMAP will be skipped."; \
	  else echo "No dovecot and no apt as root: the email tests that need IMAP will be skipped."; fi; }

bench: install
	$(BIN)/python -m benchmarks

# 10 minutes of mixed traffic against the real server: memory and p99 latency into docs/soak.md.
soak: install
	$(BIN)/python -m benchmarks.soak

lint: install
	$(BIN)/ruff check bot actions kb_index connectors handoff switchboard tests benchmarks
	$(BIN)/mypy bot actions kb_index connectors handoff switchboard benchmarks

clean:
	rm -rf $(VENV) var
