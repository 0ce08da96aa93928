# Sourced by scripts/lock and .ci/run: the Pythons the project supports and how to find them.

# Oldest first: scripts/lock resolves on the first and checks the pins on each (README: Installs).
SUPPORTED_PYTHONS=(3.11 3.12 3.13)

# Print a working interpreter for Python $1 (e.g. 3.12): pythonX.Y on PATH, else one that pyenv
# installed (pyenv's shim for a version that is not selected exists but fails). Fails if none.
find_python() {
  local candidate
  for candidate in "python$1" "$(pyenv root 2>/dev/null)/versions/$1".*/bin/"python$1"; do
    if "$candidate" -c '' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  return 1
}
