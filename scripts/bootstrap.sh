#!/usr/bin/env bash
# Creates .venv beside the project and installs auditlog with its test extras into it, once per change of
# pyproject.toml. Sourced by scripts/serve and scripts/test, so each of them installs what it needs itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ]; then
  # Say what the wait is for before it starts (pip is quiet unless something fails).
  if [ ! -x "$venv/bin/python" ]; then
    echo "auditlog: setting up .venv (first run; installs auditlog and its test dependencies, ~30 s)..." >&2
    "$python" -m venv "$venv"
  else
    echo "auditlog: updating .venv (pyproject.toml changed; reinstalls auditlog and its test dependencies)..." >&2
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]" >&2
  rm -f "$venv"/.installed-*
  touch "$stamp"
  echo "auditlog: done" >&2
fi
