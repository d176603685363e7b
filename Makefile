# homelab.migrations — the commands the README names.
.PHONY: setup test demo demo-clean bench sanity lint build clean

setup:            ## create .venv, install the tool chain, PostgreSQL server and the drizzle peer
	bash scripts/setup.sh

test:             ## everything CI runs (installs what it needs first)
	bash scripts/test.sh

demo:             ## the whole job on a throwaway PostgreSQL: status, apply, status again
	bash scripts/setup.sh
	bash scripts/demo.sh

demo-clean:       ## stop and remove the demo PostgreSQL
	bash scripts/demo.sh clean

bench:            ## benchmarks against the raw tools (table + benchmarks/results/*.json)
	bash scripts/setup.sh
	.venv/bin/python benchmarks/run.py

sanity:
	bash scripts/sanity.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ansible-lint --nocolor

build:
	.venv/bin/ansible-galaxy collection build --force --output-path .build/dist

clean:
	rm -rf .build .pytest_cache .ruff_cache
