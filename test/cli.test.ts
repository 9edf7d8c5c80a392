// The sysgenid command: output, --help everywhere, and the documented exit codes.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { CLI, RawClient, bump, eventually, launch, runNode, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

const cli = (dir: string, ...args: string[]) => runNode(CLI, [...args, '--dir', dir]);

describe('sysgenid CLI', () => {
  it('--help works for the tool and every command', async () => {
    const top = await runNode(CLI, ['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Commands:/);
    for (const cmd of [
      'status',
      'read',
      'watch',
      'bump',
      'wait',
      'quiesce',
      'resume',
      'snapshot',
      'ready',
      'criu-action',
    ]) {
      const r = await runNode(CLI, [cmd, '--help']);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`^Usage: sysgenid ${cmd}`), cmd);
    }
    const none = await runNode(CLI, []);
    assert.equal(none.code, EXIT.USAGE);
  });

  it('usage errors exit 2 with a reason', async () => {
    for (const args of [['frob'], ['bump', '--min', 'x'], ['status', '--timeout', '5'], ['wait', '--bogus']]) {
      const r = await runNode(CLI, args);
      assert.equal(r.code, EXIT.USAGE, args.join(' '));
      assert.match(r.stderr, /sysgenid --help/);
    }
  });

  it('a missing daemon exits 7 and says where it looked', async (t) => {
    const dir = path.join(tmpDir(t), 'absent');
    const r = await cli(dir, 'status');
    assert.equal(r.code, EXIT.UNREACHABLE);
    assert.match(r.stderr, /ENOTCONN: cannot reach sysgenidd at .*absent\/watch\.sock/);
  });

  it('status (text and JSON), bump and read --nonblock', async (t) => {
    const d = await startDaemon(t);
    const w = (await RawClient.open(d.paths.watch)).c;
    t.after(() => w.close());
    await w.request('NAME billing');
    const b = await cli(d.dir, 'bump', '--min', '4');
    assert.equal(b.code, 0);
    assert.equal(b.stdout, '4\n');
    const s = await cli(d.dir, 'status');
    assert.equal(s.code, 0);
    assert.match(s.stdout, /^generation 4$/m);
    assert.match(s.stdout, /^watchers {3}1 \(1 tracked, 1 outdated\)$/m);
    assert.match(s.stdout, /billing .* yes +0 +outdated for /);
    const j = await cli(d.dir, 'status', '--json');
    const doc = JSON.parse(j.stdout) as { generation: number; list: unknown[] };
    assert.equal(doc.generation, 4);
    assert.equal(doc.list.length, 1);
    const r = await cli(d.dir, 'read', '--nonblock');
    assert.equal(r.code, EXIT.NO_CHANGE);
  });

  it('read blocks until the next generation and prints it', async (t) => {
    const d = await startDaemon(t);
    let done = false;
    const pending = cli(d.dir, 'read').finally(() => (done = true));
    // The reader plus the status request's own connection. A status connection of the previous poll the
    // daemon has not seen close yet counts too, so a reader that connects after the bump is possible:
    // it then waits for the next one, which is what `read` promises.
    await eventually(async () => (await statusOf(d.dir)).connections === 2, 5000, 'reader connected');
    const bumped: number[] = [];
    for (let min = 12; !done && min < 20; min++) {
      bumped.push(await bump(d.dir, min));
      for (let i = 0; i < 20 && !done; i++) await sleep(50);
    }
    const r = await pending;
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\n$/);
    assert.ok(bumped.includes(Number(r.stdout)), `printed ${r.stdout.trim()}, bumped ${bumped.join(', ')}`);
    assert.equal(Number(r.stdout), bumped[bumped.length - 1], 'the generation that woke it, not an older one');
  });

  it('wait exits 0, 4 on timeout naming the late watcher, 5 when interrupted', async (t) => {
    const d = await startDaemon(t);
    assert.equal((await cli(d.dir, 'wait', '--timeout', '1000')).code, 0);
    const late = (await RawClient.open(d.paths.watch)).c;
    t.after(() => late.close());
    await late.request('NAME slowpoke');
    await bump(d.dir);
    const timedOut = await cli(d.dir, 'wait', '--timeout', '100');
    assert.equal(timedOut.code, EXIT.TIMEOUT);
    assert.match(timedOut.stderr, /1 watcher\(s\) still outdated after 100 ms/);
    assert.match(timedOut.stderr, /slowpoke/);
    const pending = cli(d.dir, 'wait');
    await sleep(300);
    await bump(d.dir);
    const interrupted = await pending;
    assert.equal(interrupted.code, EXIT.INTERRUPTED, interrupted.stderr);
  });

  it('bump by an unprivileged user exits 6 (EACCES) and changes nothing', async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to run the command as another user');
      return;
    }
    const base = tmpDir(t);
    fs.chmodSync(base, 0o755);
    const d = await startDaemon(t, { dir: path.join(base, 'run') });
    const r = launch(['runuser', '-u', 'nobody', '--', process.execPath, CLI, 'bump', '--dir', d.dir]);
    assert.equal(await r.closed, EXIT.DENIED, r.stderr());
    assert.match(r.stderr(), /EACCES: permission denied on .*control\.sock/);
    assert.equal((await statusOf(d.dir)).generation, 0);
  });
});
