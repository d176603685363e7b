#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection under ansible_collections/homelab/migrations
# (ansible-test needs that layout, outside any hidden directory). No ignore files: every test must
# pass as is.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/homelab-sanity.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DEST=$WORK/ansible_collections/homelab/migrations
mkdir -p "$DEST"
# the files git knows (tracked, or new and not ignored): what a clone and a build see
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue
  mkdir -p "$DEST/$(dirname "$f")"
  cp -p "$f" "$DEST/$f"
done
# ansible-test bootstraps pip in its sanity venvs with a get-pip.py it downloads from a host this
# machine cannot reach; give it an equivalent that uses ensurepip + the package index instead.
PIPV=$("$ROOT/.venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1).replace('.', '_'))
PY
)
mkdir -p ~/.ansible/test/cache
cp "$ROOT/scripts/ansible-test/get_pip.py" ~/.ansible/test/cache/get_pip_"$PIPV".py
cd "$DEST"
export PATH="$ROOT/.venv/bin:$PATH"
PYV=$("$ROOT/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$ROOT/.venv/bin/ansible-test" sanity --python "$PYV" --requirements --color no "$@"
