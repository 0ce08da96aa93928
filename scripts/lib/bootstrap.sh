# Sourced by the scripts: make the venv ($VENV: OGPU_VENV, default .venv) from nothing, with the
# project installed at the versions pinned in scripts/constraints.txt, whenever it is missing or was
# made from another pyproject.toml, constraints file or Python (OGPU_PYTHON, default python3).
# Needs only python3 (>= 3.11) with venv and pip, and a C compiler with GMP's headers for the one
# dependency that ships no wheel (README: Installs).

CONSTRAINTS=scripts/constraints.txt
VENV="${OGPU_VENV:-.venv}"

# What the venv was made from: the Python's version and a digest of the files that decide the install.
venv_stamp() {
  "$1" -c 'import hashlib, sys
digest = hashlib.sha256()
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        digest.update(f.read())
print(sys.version.split()[0], digest.hexdigest())' pyproject.toml "$CONSTRAINTS"
}

ensure_venv() {
  local py="${OGPU_PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ogpu-node needs Python >= 3.11 (set OGPU_PYTHON to one)" >&2
    exit 1
  fi
  local stamp
  stamp="$(venv_stamp "$py")"
  if [ -x "$VENV"/bin/python ] && [ "$(cat "$VENV"/.installed 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  local version checked
  version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  checked="$(sed -n 's/^# checked on: //p' "$CONSTRAINTS")"
  if [[ " $checked " != *" $version "* ]]; then
    echo "note: $CONSTRAINTS was checked on Python $checked, not $version" >&2
  fi
  # A fresh venv each time, so that nothing the old pins installed stays behind.
  if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
    echo "$VENV exists and is not a venv: not replacing it (set OGPU_VENV to a new folder)" >&2
    exit 1
  fi
  echo "== setting up $VENV (Python $version, pip install -c $CONSTRAINTS -e '.[dev,node]')"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  local log="$VENV/install.log"
  if ! { "$VENV"/bin/python -m pip install -c "$CONSTRAINTS" --upgrade pip \
         && "$VENV"/bin/python -m pip install -c "$CONSTRAINTS" -e '.[dev,node]'; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    if grep -q "gmp.h: No such file" "$log"; then
      echo "fastecdsa (needed by libp2p) compiles against GMP: install its headers" \
           "(Debian/Ubuntu: apt-get install libgmp-dev; macOS: brew install gmp)" >&2
    fi
    echo "installing the environment failed; the full log is $log" >&2
    exit 1
  fi
  warn_unpinned
  echo "$stamp" > "$VENV"/.installed
}

# A package that pyproject.toml now asks for but scripts/lock has not pinned installs at whatever
# version is newest today: say so (the install goes on).
warn_unpinned() {
  local unpinned
  unpinned="$("$VENV"/bin/python -m pip freeze --exclude-editable \
    | "$VENV"/bin/python scripts/lib/pins.py unpinned "$CONSTRAINTS")"
  if [ -n "$unpinned" ]; then
    echo "warning: $CONSTRAINTS pins no version of: $unpinned (run scripts/lock)" >&2
  fi
}

# The dashboards' browser tests drive Debian's chromium through chromium-driver (selenium). Install
# both with apt when missing and we may (root, or sudo without a password); otherwise say why, and
# those tests skip with the same reason (they fail instead where OGPU_REQUIRE_BROWSER is set, as .ci/run does).
BROWSER_PACKAGES="chromium chromium-driver"
ensure_browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return
  fi
  local apt=""
  if [ "$(id -u)" = 0 ]; then
    apt="apt-get"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    apt="sudo apt-get"
  fi
  if [ -z "$apt" ] || ! command -v apt-get >/dev/null; then
    echo "note: /usr/bin/chromium or /usr/bin/chromedriver is missing and apt-get cannot be run" \
         "here: the browser tests will skip (install: apt-get install $BROWSER_PACKAGES)" >&2
    return
  fi
  echo "== installing $BROWSER_PACKAGES (the dashboards' browser tests)"
  if ! { $apt update -qq && DEBIAN_FRONTEND=noninteractive $apt install -y -qq \
           $BROWSER_PACKAGES; } >/dev/null 2>&1; then
    echo "note: apt-get install $BROWSER_PACKAGES failed: the browser tests will skip" >&2
  fi
}
