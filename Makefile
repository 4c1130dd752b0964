# Two entry points, each doing all set-up on a fresh clone: `make demo` and `make test`.
PY := .venv/bin/python
PIP := .venv/bin/pip

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev]"
	touch $@

venv: .venv/.installed

demo: venv
	$(PY) -m qstar.cli.main demo --out runs/demo

test: venv
	.venv/bin/ruff check src tests bench
	.venv/bin/python -m pytest

.PHONY: venv demo test
