#!/usr/bin/env bash
# Builds dist/permacloud_<version>_<arch>.deb: the app and its dependencies (as wheels, installed
# at build time) in a venv at /opt/permacloud, /usr/bin/permacloud, the systemd user unit, the
# tray autostart entry, the launcher and icons.
#
# PyGObject is NOT vendored: the venv uses the system's python3-gi (--system-site-packages), which
# matches the system's GTK and gobject-introspection. The venv is tied to Debian 12's Python 3.11.
#
# Usage: packaging/build-deb.sh [OUTPUT_DIR]     (default: dist/). Needs: python3-venv, dpkg-deb,
# network access to PyPI (or a warm pip cache), and for pyfuse3: gcc, libfuse3-dev, pkg-config.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
SYSTEM_PYTHON=/usr/bin/python3
BUILD_PYTHON="${BUILD_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$BUILD_PYTHON" ] || BUILD_PYTHON=$SYSTEM_PYTHON
PREFIX=/opt/permacloud
VERSION="$("$SYSTEM_PYTHON" -c "import re,sys; print(re.search(r'__version__ = \"(.+)\"', open(sys.argv[1]).read())[1])" "$ROOT/desktop/__init__.py")"
ARCH="$(dpkg --print-architecture)"
PYVER="$("$SYSTEM_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
PYNEXT="$("$SYSTEM_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/stage"
WHEELS="$WORK/wheels"
mkdir -p "$STAGE" "$WHEELS"

echo "== wheels (permacloud $VERSION for $ARCH, Python $PYVER)"
"$BUILD_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$ROOT"
# Every runtime dependency except PyGObject, which comes from python3-gi.
mapfile -t DEPS < <("$SYSTEM_PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
for dep in deps:
    if not dep.lower().startswith("pygobject"):
        print(dep)
PY
)
"$BUILD_PYTHON" -m pip wheel --quiet --wheel-dir "$WHEELS" "${DEPS[@]}"

echo "== venv in $PREFIX"
VENV="$STAGE$PREFIX"
"$SYSTEM_PYTHON" -m venv --system-site-packages --without-pip "$VENV"
"$BUILD_PYTHON" -m pip --python "$VENV/bin/python" install --quiet --no-compile --no-index \
    --no-deps "$WHEELS"/*.whl
# The venv was made under the staging dir: point its scripts and config at the final place.
grep -rlI --null "$STAGE" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -0 -r sed -i "s|$STAGE||g"
if grep -rqI "$STAGE" "$VENV"; then
    echo "build-deb: staging path left in the venv:" >&2
    grep -rlI "$STAGE" "$VENV" >&2
    exit 1
fi
# The venv's python links to the system python3 by absolute path.
ln -sfn "$SYSTEM_PYTHON" "$VENV/bin/python3"
ln -sfn python3 "$VENV/bin/python"

echo "== system integration files"
mkdir -p "$STAGE/usr/bin" "$STAGE/usr/lib/systemd/user" "$STAGE/etc/xdg/autostart" \
    "$STAGE/usr/share/applications" "$STAGE/usr/share/doc/permacloud"
ln -s "$PREFIX/bin/permacloud" "$STAGE/usr/bin/permacloud"
fill() { sed -e 's|@EXEC@|/usr/bin/permacloud|g' -e '/^@ENVIRONMENT@$/d' "$1" > "$2"; }
fill "$ROOT/packaging/systemd/permacloud.service.in" "$STAGE/usr/lib/systemd/user/permacloud.service"
fill "$ROOT/packaging/desktop/permacloud-tray.desktop.in" "$STAGE/etc/xdg/autostart/permacloud-tray.desktop"
fill "$ROOT/packaging/desktop/permacloud.desktop.in" "$STAGE/usr/share/applications/permacloud.desktop"
"$VENV/bin/python" - "$STAGE/usr/share/icons/hicolor" <<'PY'
import sys
from pathlib import Path
from desktop.tray.icons import draw_icon
from desktop.tray.state import IconState
for size in (32, 64, 128):
    target = Path(sys.argv[1]) / f"{size}x{size}" / "apps" / "permacloud.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_icon(IconState.IN_SYNC, 0, size).save(target)
PY
cat > "$STAGE/usr/share/doc/permacloud/copyright" <<'TXT'
PermaCloud is licensed under the GNU Affero General Public License v3.0 or later.
Vendored Python dependencies in /opt/permacloud keep their own licenses (see their dist-info).
TXT

echo "== control"
mkdir -p "$STAGE/DEBIAN"
SIZE_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat > "$STAGE/DEBIAN/control" <<CTRL
Package: permacloud
Version: $VERSION
Architecture: $ARCH
Maintainer: PermaCloud developers <permacloud@localhost>
Installed-Size: $SIZE_KB
Depends: python3 (>= $PYVER), python3 (<< $PYNEXT), python3-gi, gir1.2-gtk-3.0, fuse3, libfuse3-3, xdg-utils
Recommends: gir1.2-ayatanaappindicator3-0.1, dunst | notification-daemon | gnome-shell | plasma-workspace
Section: net
Priority: optional
Homepage: https://localhost/permacloud
Description: permanent, self-hosted cloud storage for the desktop
 Files are encrypted on this device, erasure coded and spread over the
 storage nodes of other household devices; a daemon keeps a sync folder
 and a FUSE mount, and a tray icon shows what it is doing.
CTRL
cat > "$STAGE/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    /opt/permacloud/bin/python -m compileall -q /opt/permacloud/lib >/dev/null 2>&1 || true
fi
SH
cat > "$STAGE/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
find /opt/permacloud -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
SH
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm"

DEB="$OUT/permacloud_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >/dev/null
echo "built $DEB ($(du -h "$DEB" | cut -f1))"
