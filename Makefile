# The two commands a newcomer runs on a fresh Debian machine:
#   make demo   set up, then run the main job end to end on the embedded default
#   make test   set up, then run the whole test suite
.PHONY: setup platform demo test test-fast bench clean cps-check

setup:
	bash scripts/setup.sh

platform: setup
	.venv/bin/home-mlops platform up

demo: setup
	bash scripts/demo.sh

# Two workers (pytest-xdist), one test file each at a time: the serial suite keeps one of two
# cores busy (it waits on Docker builds, containers and servers). Files go out in the order
# tests/conftest.py sorts them, slowest first (--no-loadscope-reorder keeps that order; xdist's
# own puts the files with the most tests first, which leaves the long Docker files for last).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: platform
	.venv/bin/pytest -p no:cacheprovider -ra $(XDIST) $(PYTEST_ARGS)

# Everything but the Docker image builds and deploys.
test-fast: setup
	.venv/bin/pytest -p no:cacheprovider -ra -m "not docker" $(XDIST) $(PYTEST_ARGS)

# The static check for Jenkins CPS pitfalls in the Jenkinsfile and the shared library
# (make test runs it too: tests/groovy/test_cps_check.py).
cps-check:
	JAVA_HOME=$${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64} groovy tests/groovy/cps_check.groovy Jenkinsfile vars src

bench: platform
	.venv/bin/python bench/bench_build.py
	.venv/bin/python bench/bench_gateway.py
	.venv/bin/python bench/bench_switch.py
	.venv/bin/python bench/bench_many_apps.py
	.venv/bin/python bench/bench_serving.py
	.venv/bin/python bench/bench_from.py
	.venv/bin/python bench/bench_k8s.py

clean:
	rm -rf home-mlops-state .home-mlops build out
