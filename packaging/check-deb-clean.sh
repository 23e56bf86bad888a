#!/usr/bin/env bash
# Installs a built .deb into a fresh, minimal Debian 12 (debootstrap --variant=minbase, so only
# what the package's Depends pull in is there) and checks, as a normal user, that it starts:
# --version, init, the daemon answers status, an unknown path is a one-line error.
#
# Usage (root, needs debootstrap and network access to deb.debian.org):
#   packaging/check-deb-clean.sh dist/permacloud_<version>_<arch>.deb [CHROOT_DIR]
# The chroot is made in a temporary directory (about 400 MB) and removed at the end unless
# CHROOT_DIR is given (then it is reused, which saves the 40 s debootstrap).
set -euo pipefail

DEB="$(realpath "${1:?usage: check-deb-clean.sh PACKAGE.deb [CHROOT_DIR]}")"
[ "$(id -u)" = 0 ] || { echo "check-deb-clean: must run as root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "check-deb-clean: apt-get install debootstrap" >&2; exit 2; }

if [ -n "${2:-}" ]; then ROOTFS="$2"; KEEP=1; mkdir -p "$ROOTFS"; else ROOTFS="$(mktemp -d)"; KEEP=0; fi
chmod 755 "$ROOTFS"  # mktemp makes it 0700: the chroot's / must be enterable by the test user
cleanup() {
    umount "$ROOTFS/proc" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$ROOTFS"
}
trap cleanup EXIT

if [ ! -x "$ROOTFS/usr/bin/apt-get" ]; then
    echo "== debootstrap bookworm (minbase) into $ROOTFS"
    debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount --bind /proc "$ROOTFS/proc"
cp "$DEB" "$ROOTFS/tmp/permacloud.deb"

echo "== apt-get install ./$(basename "$DEB")"
chroot "$ROOTFS" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq /tmp/permacloud.deb >/dev/null 2>&1'

echo "== smoke test as a normal user"
chroot "$ROOTFS" bash -c 'id alice >/dev/null 2>&1 || useradd -m alice'
chroot "$ROOTFS" su alice -c '
set -eu
export PERMACLOUD_HOME="$HOME/pc-check"
rm -rf "$PERMACLOUD_HOME"
permacloud --version
permacloud init --name clean-check >/dev/null
permacloud daemon >"$HOME/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 50); do permacloud status >/dev/null 2>&1 && break; sleep 0.2; done
permacloud status | head -2
if permacloud get /missing.txt /tmp/out 2>/tmp/err; then echo "expected an error" >&2; exit 1; fi
echo "error line: $(cat /tmp/err)"
kill -TERM "$pid"; wait "$pid"
echo "daemon stopped cleanly"
'
echo "check-deb-clean: OK"
