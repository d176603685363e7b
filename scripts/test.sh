#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, unit + real-PostgreSQL tests, ansible-test sanity,
# ansible-lint (production profile), the collection build/install check and molecule.
# Exits non-zero on the first failing gate.   Extra pytest arguments: PYTEST_ARGS="-k status"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
step() { printf '\n===== %s =====\n' "$*"; }

step "set-up"
bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"

step "ruff"
ruff check .

step "changelog fragments"
antsibull-changelog lint

step "pytest (unit + real PostgreSQL, alembic, drizzle-orm)"
set +e
# shellcheck disable=SC2086
python -m pytest -n "${PYTEST_WORKERS:-2}" ${PYTEST_ARGS:-}
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: the test tree is broken (or PYTEST_ARGS selected nothing)" >&2
  exit 5
elif [ "$rc" != 0 ]; then
  # A real failure fails again; a test that only fails under load (the fault suite's SIGKILL sweep
  # runs ~100 playbooks on 2 cores) passes on its own. Rerun only the failed tests, once, and say so.
  echo "pytest failed (exit $rc); rerunning only the failed tests once to tell a flake from a failure" >&2
  set +e
  python -m pytest --last-failed --last-failed-no-failures none -n 1
  rc2=$?
  set -e
  if [ "$rc2" != 0 ]; then
    echo "the failed tests failed again: a real failure" >&2
    exit "$rc2"
  fi
  echo "WARNING: FLAKY — the tests above failed in the full run and passed alone; see the log" >&2
fi

step "ansible-test sanity"
bash scripts/sanity.sh

step "plugin and role documentation (antsibull-docs)"
antsibull-docs lint-collection-docs --plugin-docs .

step "ansible-lint (production profile)"
ansible-lint --nocolor

step "collection build and install"
rm -rf .build/dist .build/install
ansible-galaxy collection build --force --output-path .build/dist >/dev/null
ansible-galaxy collection install --force -p .build/install .build/dist/homelab-migrations-*.tar.gz >/dev/null
for m in homelab_migration_status homelab_migration_apply homelab_pg_backup; do
  ANSIBLE_COLLECTIONS_PATH=.build/install ansible-doc "homelab.migrations.$m" >/dev/null
done
# only what users need ships (no tests, scripts, caches or ansible-lint's .ansible/), and the tarball stays small
python scripts/check_build.py .build/dist/homelab-migrations-*.tar.gz
echo "built and installed $(ls .build/dist)"

if [ -d molecule/default ] && [ "${HOMELAB_SKIP_MOLECULE:-0}" != 1 ]; then
  step "molecule test"
  ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections" molecule test --all
fi

step "all gates passed"
