# dreamlib: two commands for a newcomer.
#   make test   -> create .venv, install everything, run unit tests + notebooks (quick mode)
#   make demo   -> create .venv, install everything, run the main job on the shipped defaults
# Both are idempotent: the install step runs again only when pyproject.toml changes.

PYTHON     ?= python3
VENV       ?= .venv
# torch first, from a spec you can change (e.g. TORCH_SPEC="torch==2.13.0+cu121 --index-url ...").
# The default takes the CPU wheel on machines that provide it locally, PyPI's build elsewhere.
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.dreamlib-installed
PYTEST     ?= $(BIN)/python -m pytest

.PHONY: install test unit notebooks-test demo course notebooks benchmarks browser-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[notebooks,test]"
	@touch $(STAMP)

# Unit tests, then every notebook executed top to bottom in quick mode (nbval).
test: unit notebooks-test

unit: $(STAMP)
	$(PYTEST) tests

notebooks-test: $(STAMP)
	DREAMLIB_QUICK=1 $(PYTEST) --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

demo: $(STAMP)
	$(BIN)/dreamlib demo

# The course in quick mode: JupyterLab on the notebooks folder (open 00_welcome.ipynb first).
course: $(STAMP)
	DREAMLIB_QUICK=1 $(BIN)/jupyter lab notebooks/

# Re-execute the notebooks in quick mode and store their outputs (what readers see on the web
# and what the NBVAL_CHECK_OUTPUT cells are compared against).
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
	  DREAMLIB_QUICK=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1200 "$$nb" || exit 1; done

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python "$$b" || exit 1; done

# One check in a real browser (a few minutes; not part of `make test`): JupyterLab headless, notebook 05
# run from the Run menu in Chromium, its slider moved, the figure seen to change. Screenshots go to
# work/browser_check/. Chromium comes from Debian, not from Playwright's download:
#   apt-get install -y chromium        (or CHROMIUM=/path/to/chromium make browser-check)
# Another notebook: make browser-check BROWSER_NB=notebooks/NN_name.ipynb
BROWSER_NB ?= notebooks/05_adaptive_pruning.ipynb
browser-check: $(STAMP)
	@$(BIN)/python -c "import playwright" 2>/dev/null || \
	  $(BIN)/python -m pip install --disable-pip-version-check -q playwright
	@$(BIN)/python -c "import jupyterlab, ipywidgets" 2>/dev/null || \
	  $(BIN)/python -m pip install --disable-pip-version-check -q -e ".[notebooks]"
	$(BIN)/python scripts/browser_check.py $(BROWSER_NB)

clean:
	rm -rf $(VENV) work results/demo .pytest_cache
