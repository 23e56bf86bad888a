#!/usr/bin/env bash
# Installs what PermaCloud needs on Debian/Ubuntu: system packages (apt) and the Python environment
# in .venv/ with the project in editable mode. Safe to run again: it only does what is missing.
# Works as root and as a normal user with sudo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

APT_PACKAGES=(
  # build of pyfuse3 and the mount
  fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv
  # tray (pystray gtk backend) and its tests on a virtual X server
  libgirepository1.0-dev libcairo2-dev gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1
  xvfb trayer xdotool x11-utils imagemagick dbus dbus-x11 dunst
  # keyring (Secret Service) and desktop-file checks
  gnome-keyring libsecret-tools desktop-file-utils
  # tools the tests drive through the mount
  rsync sqlite3 git
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The system interpreter, not a pyenv shim: a venv from a 0700 home is unusable by other users.
PYTHON=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi

STAMP=.venv/.permacloud-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "bootstrap: installing the Python environment (first time takes a minute: pyfuse3 builds)"
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -e '.[dev]'; } >.venv/install.log 2>&1; then
    tail -30 .venv/install.log
    echo "bootstrap: installing the Python environment failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
