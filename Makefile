# make demo: set up .venv, write a synthetic photo set into inbox/demo/, run the daemon until idle
# (ingest, then structure from motion: about two minutes on 2 cores).
# make test: set up .venv and run the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,heic,sfm,train]'
	@# Native journal fields need systemd-python, which builds only against libsystemd-dev.
	@if pkg-config --exists libsystemd 2>/dev/null; then \
		$(BIN)/pip install --quiet 'systemd-python>=235' || echo "note: systemd-python did not build; logs go to stderr"; \
	else echo "note: libsystemd-dev not installed; logs go to stderr with priority prefixes"; fi
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p inbox outbox
	$(BIN)/instarecon demo-set inbox/demo
	$(BIN)/instarecon run --until-idle --inbox inbox --outbox outbox --state state
	@echo
	@$(BIN)/python -c "import json; d = json.load(open('inbox/demo/status.json')); print('job', d['job_id'], 'is', d['state'] + ':', d['message']); print('status.json: inbox/demo/status.json and outbox/' + d['job_id'] + '/status.json'); s = d['metrics'].get('sfm'); s and print('sfm: {registered}/{total} photos registered, {points} points, mean reprojection error {mean_reprojection_error} px, {seconds} s'.format(**s)); [print('output', k + ':', v) for k, v in d['outputs'].items()]"
	@echo
	cat inbox/demo/status.json

test: $(STAMP)
	$(BIN)/python -m pytest

clean-demo:
	rm -rf inbox/demo state outbox/demo-*
