# The two commands a newcomer runs on a fresh Debian machine:
#   make demo   set up, then run the main job end to end on the embedded default
#   make test   set up, then run the whole test suite
.PHONY: setup platform demo test test-fast bench clean

setup:
	bash scripts/setup.sh

platform: setup
	.venv/bin/home-mlops platform up

demo: setup
	bash scripts/demo.sh

test: platform
	.venv/bin/pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

# Everything but the Docker image builds and deploys.
test-fast: setup
	.venv/bin/pytest -p no:cacheprovider -ra -m "not docker" $(PYTEST_ARGS)

bench: platform
	.venv/bin/python bench/bench_build.py
	.venv/bin/python bench/bench_gateway.py
	.venv/bin/python bench/bench_switch.py
	.venv/bin/python bench/bench_many_apps.py

clean:
	rm -rf home-mlops-state .home-mlops build out
