# make demo · make test · make bench — each creates .venv and installs xbench into it when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.xbench-installed
DEMO_OUT ?= demo

.PHONY: demo test bench browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# The main job on the shipped data (studies/demo.toml): paired LeNet training on mnist10k (SGD vs Bort-S, 3 seeds,
# the paper's recipe), saliency maps from the six interpreters of the paper's Table 3, every metric, the leaderboard.
demo: $(STAMP)
	$(BIN)/xbench run studies/demo.toml --out $(DEMO_OUT) --quiet

# Headless Chromium + driver for the leaderboard rendering test (Debian packages), installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { echo "installing chromium and chromium-driver (Debian)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
	    || echo "could not install chromium; the browser test will fail"; }

test: $(STAMP) browser
	XBENCH_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	test -d benchmarks/.venv-quantus || PY=$(CURDIR)/$(BIN)/python bash benchmarks/setup_quantus.sh || true
	$(BIN)/python benchmarks/bort_overhead.py
	$(BIN)/python benchmarks/interpreters.py
	$(BIN)/python benchmarks/perturbation.py
	$(BIN)/python benchmarks/split.py
	$(BIN)/python benchmarks/ranking.py
	$(BIN)/python benchmarks/weights.py
	$(BIN)/python benchmarks/guided_ig.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/train_scale.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
