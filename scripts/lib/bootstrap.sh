# Sourced by the scripts: make .venv with the project installed, from nothing, when it is missing or
# older than pyproject.toml. Needs only python3 (>= 3.11) with venv and pip.

ensure_venv() {
  local py="${OGPU_PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ogpu-node needs Python >= 3.11 (set OGPU_PYTHON to one)" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "== setting up .venv (pip install -e '.[dev]')"
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    local log=.venv/install.log
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install -e '.[dev]'; } >"$log" 2>&1; then
      tail -40 "$log" >&2
      echo "installing the environment failed; the full log is $log" >&2
      exit 1
    fi
    touch .venv/.installed
  fi
}
