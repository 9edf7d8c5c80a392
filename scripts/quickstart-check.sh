#!/usr/bin/env bash
# The README's quickstart, run literally on a fresh clone of this repository (CI runs it from .ci/run):
# `npm install`, `npm start` as root (so the daemon is the system one, in /run/sysgenid), the watcher,
# bump, status and wait of the three terminals, the Node snippet, snapshot and ready, and then an
# ordinary user (nobody) who finds the system daemon with no configuration. Needs root, runuser and a
# machine where no other daemon uses /run/sysgenid; it says so and exits 0 when that is not the case
# (SYSGENID_QUICKSTART_STRICT=1 makes that a failure). Everything it starts is stopped, its clone removed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
fail() { echo "quickstart: FAILED: $*" >&2; exit 1; }
trap 'echo "quickstart: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
skip() {
  echo "quickstart: skipped: $*"
  [ "${SYSGENID_QUICKSTART_STRICT:-0}" = 1 ] && exit 1
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (the README's npm start as root runs the system daemon)"
command -v runuser >/dev/null || skip "needs runuser (util-linux)"
[ -e /run/sysgenid ] && skip "/run/sysgenid exists: another daemon may own it"
unset SYSGENID_DIR

# The system daemon keeps its counter floor in /var/lib/sysgenid: removed afterwards if this made it.
state_existed=0
[ -e /var/lib/sysgenid ] && state_existed=1
work="$(mktemp -d /tmp/sysgenid-quickstart-XXXXXX)"
chmod 755 "$work"
daemon=""
watcher=""
# npm start and npx run node as a child: each is started in a process group of its own (setsid), and
# the whole group is stopped, so no daemon or watcher outlives this script.
cleanup() {
  [ -n "$watcher" ] && kill -- "-$watcher" 2>/dev/null || true
  if [ -n "$daemon" ]; then
    kill -- "-$daemon" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$daemon" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work" /run/sysgenid
  [ "$state_existed" = 1 ] || rm -rf /var/lib/sysgenid
}
trap cleanup EXIT

git clone -q "$repo" "$work/sysgenid"
cd "$work/sysgenid"
# A clone of a working tree has its last commit only: this checks what is committed.
echo "quickstart: npm install"
npm install --no-audit --no-fund >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "npm install"; }
[ -z "$(git status --porcelain)" ] || { git status --porcelain; fail "npm install changed the clone"; }

# terminal 1: the daemon
setsid npm start >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do npx sysgenid get >/dev/null 2>&1 && break; sleep 0.1; done
npx sysgenid get >/dev/null || { cat "$work/daemon.log"; fail "the daemon did not come up"; }
[ -S /run/sysgenid/watch.sock ] || fail "npm start as root did not use /run/sysgenid"

# terminal 2: a watcher that re-adjusts on every new generation
setsid npx sysgenid watch --name demo -- sh -c 'echo "re-keying for generation $SYSGENID"; sleep 2' \
  >"$work/watch.log" 2>&1 &
watcher=$!
for _ in $(seq 100); do npx sysgenid ready --name demo --quiet && break; sleep 0.1; done

# terminal 3: force a new generation, then wait for everyone
[ "$(npx sysgenid bump)" = 1 ] || fail "bump did not print 1"
status="$(npx sysgenid status)"
grep -q demo <<<"$status" || fail "status does not list demo: $status"
npx sysgenid wait --timeout 5000 && echo "every watcher re-adjusted" || fail "wait"
grep -q "re-keying for generation 1" "$work/watch.log" || fail "the watcher's command did not run"

# From Node, as the README shows it (the package by its name, from inside the clone)
cat >"$work/snippet.mjs" <<'JS'
import { connect } from 'sysgenid';
const regenerateSessionKeys = async () => {};
const watcher = await connect({ name: 'my-service' });
watcher.handle(async (generation) => {
  await regenerateSessionKeys();
  console.log(`handled ${generation}`);
  watcher.close();
});
console.log('connected');
JS
cp "$work/snippet.mjs" ./quickstart-snippet.mjs
node quickstart-snippet.mjs >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 100); do grep -q connected "$work/node.log" && break; sleep 0.1; done
npx sysgenid bump >/dev/null
wait "$node_pid" || fail "the Node snippet failed: $(cat "$work/node.log")"
rm quickstart-snippet.mjs
grep -q "handled 2" "$work/node.log" || fail "the Node snippet did not handle generation 2"

# A whole machine, safely
npx sysgenid wait --timeout 5000
npx sysgenid snapshot -- true || fail "snapshot -- true"
npx sysgenid ready || fail "ready after the snapshot"

# An ordinary user finds the system daemon with no configuration (no SYSGENID_DIR, no --dir). They run
# the program the package installs as `sysgenid` (its bin, dist/sysgenid.cjs): npx as another user than
# the clone's owner looks the package up in the registry instead of using the clone's own bin.
as_user() { runuser -u nobody -- env HOME="$work" "$PWD/dist/sysgenid.cjs" "$@"; }
found="$(as_user status --json 2>&1)" || fail "nobody's status failed: $found"
grep -q '"dir": "/run/sysgenid"' <<<"$found" || fail "nobody did not find /run/sysgenid: $found"
[ "$(as_user get)" = 2 ] || fail "nobody's get is not 2"
as_user watch --name nobody-demo --count 1 >"$work/nobody.log" 2>&1 &
user_watcher=$!
for _ in $(seq 100); do npx sysgenid ready --name nobody-demo --quiet && break; sleep 0.1; done
npx sysgenid bump >/dev/null
wait "$user_watcher" || fail "nobody's watcher failed: $(cat "$work/nobody.log")"
[ "$(cat "$work/nobody.log")" = 3 ] || fail "nobody's watcher printed $(cat "$work/nobody.log")"
echo "quickstart: ok (README quickstart on a fresh clone, a non-root user found /run/sysgenid)"
