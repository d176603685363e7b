#!/usr/bin/env bash
# One-time (idempotent) set-up: PostgreSQL server binaries, the virtualenv, the drizzle peer,
# and the collection link Ansible loads it through. Safe to run again; each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '[setup] %s\n' "$*"; }

have_pg_server() {
  [ -n "${HOMELAB_TEST_PG_DSN:-}" ] && return 0
  local d
  for d in "${PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${HOMELAB_NO_APT:-0}" != 1 ]; then
    log "installing Debian packages: $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    log "missing: $* — install them (sudo apt-get install $*) and run again"
    return 1
  fi
}

if ! have_pg_server; then
  apt_install postgresql postgresql-client
  # the Debian package starts a cluster of its own; the tests start their own throwaway ones
fi
command -v pg_dump >/dev/null || apt_install postgresql-client
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
# ansible-test sanity's shellcheck test is skipped (not passed) without it
command -v shellcheck >/dev/null || apt_install shellcheck || log "shellcheck missing: ansible-test will skip its shellcheck test"
# the dashboard's browser tests drive Debian's headless Chromium through its chromedriver (no browser download)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver || log "chromium missing: the dashboard's browser tests will be skipped"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python requirements"
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# the oldest ansible-core the collection claims (2.16), for tests/test_oldest_ansible.py
ostamp=.venv-oldest/.requirements.sha256
owant=$(cat tests/requirements-oldest.txt meta/ee-requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ostamp" 2>/dev/null)" != "$owant" ]; then
  log "installing ansible-core 2.16 into .venv-oldest"
  [ -x .venv-oldest/bin/python ] || "$PY" -m venv .venv-oldest
  (cd tests && ../.venv-oldest/bin/pip install -q --disable-pip-version-check -r requirements-oldest.txt)
  echo "$owant" > "$ostamp"
fi

PEER=tests/peers/drizzle
if [ -f "$PEER/package-lock.json" ]; then
  if command -v npm >/dev/null; then
    pstamp=$PEER/node_modules/.lock.sha256
    pwant=$(sha256sum "$PEER/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$pstamp" 2>/dev/null)" != "$pwant" ]; then
      log "installing the drizzle-orm peer (npm ci)"
      (cd "$PEER" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
      echo "$pwant" > "$pstamp"
    fi
  else
    log "Node/npm not found: tests that need the drizzle-orm peer will be skipped (apt-get install nodejs npm)"
  fi
fi

# real projects' Alembic histories (from their published wheels) for the corpus tests; they skip without them
CORPUS=${HOMELAB_CORPUS:-}
for d in "$CORPUS" "$ROOT/../shared/corpus" "$ROOT/../../shared/corpus"; do
  if [ -n "$d" ] && [ -f "$d/alembic_trees.py" ]; then CORPUS=$d; break; fi
done
if [ -n "$CORPUS" ] && [ -f "$CORPUS/alembic_trees.py" ]; then
  if [ ! -f .cache/corpus/.done ]; then
    log "writing the corpus Alembic trees into .cache/corpus (pip download of the pinned wheels)"
    if .venv/bin/python "$CORPUS/alembic_trees.py" .cache/corpus >/dev/null; then
      touch .cache/corpus/.done
    else
      log "the corpus Alembic trees could not be written: the corpus tests will be skipped"
    fi
  fi
else
  log "no shared corpus folder (HOMELAB_CORPUS, ../shared/corpus): the corpus tests will be skipped"
fi

mkdir -p .build/collections/ansible_collections/homelab
ln -sfn ../../../.. .build/collections/ansible_collections/homelab/migrations
log "ready: $ROOT/.venv (ansible-core $(.venv/bin/python -c "import ansible.release as r; print(r.__version__)"))"
