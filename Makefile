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

.PHONY: install test unit notebooks-test demo notebooks benchmarks clean

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

# Re-execute the notebooks in quick mode and store their outputs (what readers see on the web
# and what the NBVAL_CHECK_OUTPUT cells are compared against).
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
	  DREAMLIB_QUICK=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1200 "$$nb" || exit 1; done

benchmarks: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python "$$b" || exit 1; done

clean:
	rm -rf $(VENV) work results/demo .pytest_cache
