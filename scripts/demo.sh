#!/usr/bin/env bash
# The whole migrate-all job on a throwaway PostgreSQL (make demo; run scripts/setup.sh first):
#   1. start PostgreSQL on a free port in .demo/ (as the postgres OS user when run as root)
#   2. create the example homelab's three databases, owned by a role with a generated password
#   3. status:  ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory --check
#   4. apply:   ... -e migrate_all_confirm=true   (backups, audit log, status JSON, metrics in .demo/)
#   5. status again, the status JSON the dashboard would serve, the audit trail
#
#   scripts/demo.sh clean     stop the demo PostgreSQL and remove .demo/   (make demo-clean)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
PGDIR=$DEMO/pg
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_bindir() {
  local d
  for d in "${PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

pg_dir() {  # the real cluster directory (.demo/pg, or a /tmp directory it links to)
  if [ -L "$PGDIR" ]; then readlink "$PGDIR"; else echo "$PGDIR"; fi
}

stop_cluster() {
  local dir bindir
  dir=$(pg_dir)
  if [ -f "$dir/data/postmaster.pid" ] && [ -f "$DEMO/bindir" ]; then
    bindir=$(cat "$DEMO/bindir")
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    echo "stopped the demo PostgreSQL"
  fi
  if [ -L "$PGDIR" ]; then rm -rf "$(readlink "$PGDIR")"; fi
}

if [ "${1:-}" = clean ]; then
  if [ -d "$DEMO" ] || [ -L "$PGDIR" ]; then
    stop_cluster
    rm -rf "$DEMO"
    echo "removed $DEMO"
  else
    echo "nothing to clean ($DEMO does not exist)"
  fi
  exit 0
fi
[ $# -eq 0 ] || die "usage: scripts/demo.sh [clean]"

[ -x .venv/bin/ansible-playbook ] || die "no .venv: run scripts/setup.sh (or make demo, which runs it) first"
[ -L .build/collections/ansible_collections/homelab/migrations ] || die "the collection link is missing: run scripts/setup.sh"
BINDIR=$(find_bindir) || die "no PostgreSQL server binaries found: apt-get install postgresql (or set PG_BINDIR)"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root and there is no postgres OS user (apt-get install postgresql)"
fi
export PATH="$ROOT/.venv/bin:$BINDIR:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections"
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ANSIBLE_LOCALHOST_WARNING=0
PY=$ROOT/.venv/bin/python

# ------------------------------------------------------------------------------- PostgreSQL
say "1. a throwaway PostgreSQL in .demo/"
mkdir -p "$DEMO"
chmod 0711 "$DEMO"   # the postgres user may pass through to .demo/pg; the files stay private
echo "$BINDIR" > "$DEMO/bindir"
stop_cluster
rm -rf "$PGDIR"
mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$PGDIR"
  chmod 0700 "$PGDIR"
  # the postgres user must reach the directory; a checkout under /root is not reachable
  if ! runuser -u postgres -- test -x "$PGDIR"; then
    rmdir "$PGDIR"
    tmp=$(mktemp -d /tmp/homelab-demo-pg.XXXXXX)
    chown postgres: "$tmp"
    ln -s "$tmp" "$PGDIR"
    echo "($DEMO is not reachable by the postgres user; the cluster lives in $tmp, linked from .demo/pg)"
  fi
fi
DIR=$(pg_dir)
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$BINDIR/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \
  --locale=C.UTF-8 >"$DEMO/initdb.log" 2>&1 || { cat "$DEMO/initdb.log"; die "initdb failed"; }
as_pg "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR" start >/dev/null || { cat "$DIR/server.log"; die "pg_ctl start failed"; }
echo "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $DIR/data)"

# the services' role: a generated password that only ever travels in a 0600 vars file and stdin
PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')
psql_admin() { as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
printf "CREATE ROLE homelab LOGIN PASSWORD '%s';\n" "$PASSWORD" | psql_admin >/dev/null
for db in dashboard stream_bot discord_bot; do
  psql_admin -c "CREATE DATABASE $db OWNER homelab" >/dev/null
done
echo "databases dashboard, stream_bot, discord_bot (owner: homelab, password in .demo/vars.yml, mode 0600)"

umask 077
cat > "$DEMO/vars.yml" <<EOF
---
homelab_demo_pg_host: 127.0.0.1
homelab_demo_pg_port: $PORT
homelab_demo_pg_user: homelab
homelab_demo_pg_password: "$PASSWORD"
migrate_all_backup_dir: $DEMO/backups
migrate_all_audit_log: $DEMO/audit.log
migrate_all_status_report: $DEMO/migrations.json
migrate_all_prometheus_textfile: $DEMO/homelab_migrations.prom
EOF
umask 022

play() { ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory -e @"$DEMO/vars.yml" "$@"; }

# ------------------------------------------------------------------------------- the job
say "2. status: ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory --check"
play --check

say "3. apply: ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory -e migrate_all_confirm=true"
play -e migrate_all_confirm=true

say "4. status again (nothing pending)"
play --check

say "5. the status JSON the dashboard serves ($DEMO/migrations.json)"
"$PY" -m json.tool "$DEMO/migrations.json"

say "   node_exporter metrics ($DEMO/homelab_migrations.prom)"
grep -v '^#' "$DEMO/homelab_migrations.prom"

say "   backups ($DEMO/backups) and the audit trail ($DEMO/audit.log)"
ls -l "$DEMO/backups"
"$PY" - "$DEMO/audit.log" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print('%s  %-11s %-8s %-8s %s -> %s  (%s, confirmed by %s)' % (
        r['time'], r['service'], r['action'], r['outcome'], r['from'] or '(none)', r['to'] or '(none)',
        'role summary' if r.get('source') == 'role' else 'apply module', r.get('confirmation')))
EOF

say "done"
cat <<EOF
Try next (same vars file):
  ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory -e @.demo/vars.yml \\
      -e migrate_all_action=rollback -e migrate_all_confirm=true --tags stream-bot
  ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory -e @.demo/vars.yml    # asks on a terminal
(with PATH=\$PWD/.venv/bin:\$PATH ANSIBLE_COLLECTIONS_PATH=\$PWD/.build/collections)

Clean up: make demo-clean   (or: scripts/demo.sh clean) stops this PostgreSQL and removes .demo/
EOF
