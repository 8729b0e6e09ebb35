# The two set-up commands: `make demo` and `make test`. Both create and reuse one virtual environment at .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: venv test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto

demo: $(STAMP)
	$(BIN)/python -m magicanimate_cli.demo $(DEMO)
	$(BIN)/magicanimate animate $(DEMO)/reference.png $(DEMO)/motion.mp4 --weights $(DEMO)/weights \
		--size 128 --steps 4 --seed 1 -o $(DEMO)/animation.mp4
	@echo "wrote $(DEMO)/animation.mp4"

clean:
	rm -rf $(VENV) $(DEMO)
