#!/usr/bin/env bash
# Installs everything, then runs a local demo household: storage node processes on 127.0.0.1,
# this device's daemon (with its own node) in a demo home, a first file stored, the cloud mounted
# (FUSE) and a sync folder under the demo dir, and the status.
# Runs until Ctrl-C (then stops everything it started); `--once` stops after the first status.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh

ONCE=0
[ "${1:-}" = "--once" ] && ONCE=1
DEMO="${PERMACLOUD_DEMO_DIR:-$ROOT/.demo}"
NODES="${PERMACLOUD_DEMO_NODES:-9}"
BASE_PORT="${PERMACLOUD_DEMO_PORT:-47100}"
PC="$ROOT/.venv/bin/permacloud"
export PERMACLOUD_HOME="$DEMO/home"
mkdir -p "$DEMO"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$DEMO/nodes/nodes.toml"
"$PC" demo nodes --count "$NODES" --dir "$DEMO/nodes" --base-port "$BASE_PORT" \
  >"$DEMO/nodes.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s "$DEMO/nodes/nodes.toml" ] && break; sleep 0.1; done
[ -s "$DEMO/nodes/nodes.toml" ] || { cat "$DEMO/nodes.log"; echo "demo nodes did not start"; exit 1; }

if [ ! -f "$PERMACLOUD_HOME/config/config.toml" ]; then
  "$PC" init --name "demo-$(hostname)" --nodes "$DEMO/nodes/nodes.toml" \
    --listen "127.0.0.1:$((BASE_PORT + 99))"
fi
"$PC" daemon >"$DEMO/daemon.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do grep -q "daemon ready" "$DEMO/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep -q "daemon ready" "$DEMO/daemon.log" || { cat "$DEMO/daemon.log"; exit 1; }

if ! "$PC" ls /Welcome.txt >/dev/null 2>&1; then
  printf 'Welcome to PermaCloud. This file is encrypted, erasure coded 3-of-10 and spread\nover the demo nodes.\n' >"$DEMO/Welcome.txt"
  "$PC" put "$DEMO/Welcome.txt" /Welcome.txt
fi
MOUNT="$DEMO/PermaCloud"
mkdir -p "$MOUNT"
# The daemon remounts where it was mounted before a restart: that counts as mounted here.
if mount_error="$("$PC" mount "$MOUNT" 2>&1)" || [[ "$mount_error" == *"already mounted at $MOUNT" ]]; then
  MOUNTED="The cloud is mounted at $MOUNT: drag files in and out with any file manager."
else
  echo "$mount_error" >&2
  MOUNTED="The mount did not start (see the error above); everything else works without it."
fi
# The demo's sync folder sits beside its mount, so trying the demo never touches ~/PermaCloudSync
# (the default of `permacloud sync add` for a real account).
SYNC="${PERMACLOUD_DEMO_SYNC:-$DEMO/PermaCloudSync}"
mkdir -p "$SYNC"
folders="$("$PC" sync status --json)"
[[ "$folders" == *"\"$SYNC\""* ]] || "$PC" sync add "$SYNC"
"$PC" ls /
"$PC" status
"$PC" sync status

cat <<MSG

The demo household is running: $NODES nodes on 127.0.0.1:$BASE_PORT.. and this device's daemon.
$MOUNTED
The sync folder is $SYNC: files put there are stored in /Sync and reach every device.
In another terminal:
  export PERMACLOUD_HOME=$PERMACLOUD_HOME PATH=$ROOT/.venv/bin:\$PATH
  permacloud put SOMEFILE /SOMEFILE      # store a file
  permacloud ls /                        # list
  permacloud get /Welcome.txt out.txt    # read it back
  permacloud share /Welcome.txt          # a link anyone on the network can read
  permacloud sync status                 # in sync / pending / conflicts
  permacloud invite                      # a code for a second device (see README)
Logs: $DEMO/daemon.log, $DEMO/nodes.log. Ctrl-C stops the demo.
MSG
if [ "$ONCE" = 1 ]; then exit 0; fi
wait
