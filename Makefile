# make demo: set up .venv, write a synthetic photo set into inbox/demo/, run the daemon until idle
# (ingest, structure from motion, training, evaluation and publishing on the CPU: about 6 minutes on 2 cores;
# the demo's job.toml trains 2000 iterations at 200x150 with at most 50,000 Gaussians).
# make serve: serve the outbox (gallery and viewer pages) on http://127.0.0.1:8000/.
# make test: set up .venv and run the test suite, in TEST_WORKERS processes (pytest-xdist), a test file to each:
# most of the suite waits on real daemons, browsers and clocks (one process keeps 0.6 of a core busy), so three
# workers on 2 cores take about 7 minutes where one takes 13.
# make test-fast: the tests that need no browser, no PostgreSQL and no whole-daemon run, SfM or training (about
# a minute on 2 cores); make test still runs them all.
# make docs: rewrite docs/configuration.md from the settings' definitions and the job.toml schema.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_WORKERS ?= 3

.PHONY: demo serve test test-fast venv clean-demo docs

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,heic,sfm,train]'
	@# LPIPS's linear layers ship in the lpips package: --no-deps, its torchvision must not replace our torch.
	$(BIN)/pip install --quiet --no-deps lpips==0.1.4
	@# Native journal fields need systemd-python, which builds only against libsystemd-dev.
	@if pkg-config --exists libsystemd 2>/dev/null; then \
		$(BIN)/pip install --quiet 'systemd-python>=235' || echo "note: systemd-python did not build; logs go to stderr"; \
	else echo "note: libsystemd-dev not installed; logs go to stderr with priority prefixes"; fi
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p inbox outbox
	$(BIN)/instarecon demo-set inbox/demo
	printf 'iterations = 2000\ntrain_max_image_size = 200\nmax_gaussians = 50000\n' > inbox/demo/job.toml
	$(BIN)/instarecon run --until-idle --inbox inbox --outbox outbox --state state
	@echo
	@$(BIN)/instarecon status --state state $$($(BIN)/python -c "import json; print(json.load(open('inbox/demo/status.json'))['job_id'])")
	@echo "status.json: inbox/demo/status.json; the scene (scene.sog, scene.ply, scene.splat, poster.jpg): outbox/<job>/"
	@echo "the site: outbox/index.html (gallery) and outbox/<job>/index.html (viewer); to look at it: make serve"

serve:
	@echo "serving outbox/ on http://127.0.0.1:8000/ (Ctrl-C stops)"
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory outbox 8000

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not browser and not postgres and not slow"

docs: $(STAMP)
	$(BIN)/python -m daemon.config_reference > docs/configuration.md.tmp \
		&& mv docs/configuration.md.tmp docs/configuration.md || { rm -f docs/configuration.md.tmp; exit 1; }

clean-demo:
	rm -rf inbox/demo state outbox/demo-*
