// `--json` on every command, `sysgenid get`, `ready --name` and `--version` (issue 14): the exit codes
// and the JSON documents docs/CLI.md describes, field by field.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { COMMANDS } from '../src/cli/commands/index.js';
import { EXIT } from '../src/cli/exit.js';
import { connect } from '../src/client/watcher.js';
import { CLI, ROOT, bump, eventually, runNode, startCli, startDaemon, statusOf, tmpDir } from './helpers.js';

const cli = (dir: string, ...args: string[]) => runNode(CLI, [...args, '--dir', dir]);
const json = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

describe('sysgenid get', () => {
  it('prints the current generation at once, in words and as JSON', async (t) => {
    const d = await startDaemon(t);
    await bump(d.dir, 41);
    const r = await cli(d.dir, 'get');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '41\n');
    assert.deepEqual(json((await cli(d.dir, 'get', '--json')).stdout), { generation: 41 });
    // `read` is the one that blocks; its help now points at get.
    assert.match((await runNode(CLI, ['read', '--help'])).stdout, /sysgenid get/);
  });
});

describe('--json on every command', () => {
  it('every command but criu-action declares --json and its help lists it', () => {
    for (const c of COMMANDS) {
      if (c.name === 'criu-action') continue;
      assert.ok(Object.hasOwn(c.options, 'json'), c.name);
      assert.match(c.help, /--json/, c.name);
    }
  });

  it('bump, read, wait, quiesce, resume, ready print their documents', async (t) => {
    const d = await startDaemon(t);
    assert.deepEqual(json((await cli(d.dir, 'bump', '--json')).stdout), { generation: 1 });
    const read = runNode(CLI, ['read', '--json', '--dir', d.dir]);
    await eventually(async () => (await statusOf(d.dir)).watchers === 0, 2000, 'reader is an observer');
    await new Promise((r) => setTimeout(r, 200));
    await bump(d.dir);
    assert.deepEqual(json((await read).stdout), { generation: 2 });

    const waited = await cli(d.dir, 'wait', '--json', '--timeout', '1000');
    assert.equal(waited.code, 0);
    assert.equal(json(waited.stdout).ok, true);
    assert.equal(typeof json(waited.stdout).waitedMs, 'number');

    const q = await cli(d.dir, 'quiesce', '--json');
    assert.equal(q.code, 0, q.stderr);
    const report = json(q.stdout);
    assert.equal(report.kind, 'quiesce');
    assert.equal(report.outcome, 'ok');
    const busy = await cli(d.dir, 'quiesce', '--json');
    assert.equal(busy.code, EXIT.BUSY);
    assert.deepEqual((json(busy.stdout).error as { code: string }).code, 'EBUSY');
    assert.match(busy.stderr, /run "sysgenid resume" first/, 'names the command, not the wire verb');
    assert.doesNotMatch(busy.stderr, /UNQUIESCE/);

    const notReady = await cli(d.dir, 'ready', '--json');
    assert.equal(notReady.code, EXIT.FAILURE);
    assert.equal(json(notReady.stdout).ready, false);
    assert.equal(json(notReady.stdout).state, 'quiesced');

    const resumed = await cli(d.dir, 'resume', '--json');
    assert.equal(resumed.code, 0, resumed.stderr);
    const doc = json(resumed.stdout);
    assert.equal(doc.ok, true);
    // With no subscriber there was nobody to un-quiesce: the report has no steps.
    assert.equal(doc.resumedBy, 'nothing');
    assert.equal((doc.report as { kind: string }).kind, 'unquiesce');

    const ready = await cli(d.dir, 'ready', '--json');
    assert.equal(ready.code, 0);
    assert.deepEqual(json(ready.stdout), {
      ready: true,
      name: null,
      generation: 2,
      state: 'running',
      watchers: 0,
      reasons: [],
      outdated: [],
    });
  });

  it('wait --json on timeout names the late watchers and exits 4', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'late-one' });
    t.after(() => w.close());
    await bump(d.dir);
    const r = await cli(d.dir, 'wait', '--json', '--timeout', '100');
    assert.equal(r.code, EXIT.TIMEOUT);
    const doc = json(r.stdout);
    assert.equal(doc.ok, false);
    assert.equal((doc.error as { code: string }).code, 'ETIME');
    assert.deepEqual(
      (doc.outdated as Array<{ name: string }>).map((x) => x.name),
      ['late-one'],
    );
  });

  it('a failure with --json is one JSON document on stdout with the exit code', async (t) => {
    const dir = path.join(tmpDir(t), 'absent');
    const r = await cli(dir, 'status', '--json');
    assert.equal(r.code, EXIT.UNREACHABLE);
    const doc = json(r.stdout);
    assert.equal(doc.ok, false);
    assert.equal(doc.exitCode, EXIT.UNREACHABLE);
    assert.equal((doc.error as { code: string }).code, 'ENOTCONN');
  });

  it('snapshot --json reports both halves; a failing CMD resumes at once without the settle time', async (t) => {
    const d = await startDaemon(t);
    const ok = await runNode(CLI, ['snapshot', '--json', '--settle', '0', '--dir', d.dir, '--', 'true']);
    assert.equal(ok.code, 0, ok.stderr);
    const doc = json(ok.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.copy, false);
    assert.equal(doc.commandExit, 0);
    assert.equal((doc.quiesce as { outcome: string }).outcome, 'ok');
    const started = Date.now();
    const failed = await runNode(CLI, ['snapshot', '--json', '--settle', '20000', '--dir', d.dir, '--', 'false']);
    assert.ok(Date.now() - started < 10_000, 'did not wait the settle time');
    assert.equal(failed.code, EXIT.FAILURE);
    assert.equal(json(failed.stdout).commandExit, 1);
    assert.match(failed.stderr, /false exited with 1, no snapshot taken; resuming/);
    assert.doesNotMatch(failed.stderr, /this is the original/);
    assert.equal(((await statusOf(d.dir)).lifecycle as { state: string }).state, 'running');
  });

  it('watch --json prints one line per generation handled', async (t) => {
    const d = await startDaemon(t);
    const watch = startCli(t, ['watch', '--json', '--count', '1', '--dir', d.dir]);
    await eventually(async () => (await statusOf(d.dir)).watchers === 1, 5000, 'watcher connected');
    await bump(d.dir);
    assert.equal(await watch.closed, 0);
    assert.deepEqual(json(watch.stdout()), { generation: 1, handled: true, attempts: 1 });
  });
});

describe('sysgenid ready --name', () => {
  it("one service's broken watcher does not fail another service's probe", async (t) => {
    const d = await startDaemon(t);
    const good = await connect({ dir: d.dir, name: 'web' });
    const broken = await connect({ dir: d.dir, name: 'batch' });
    t.after(() => {
      good.close();
      broken.close();
    });
    good.handle(() => {});
    broken.handle(
      () => {
        throw new Error('cannot re-key');
      },
      { retryMinMs: 60_000 },
    );
    broken.on('error', () => {});
    await bump(d.dir);
    await eventually(
      async () => (await statusOf(d.dir)).list?.find((w) => w.name === 'batch')?.problem,
      5000,
      'batch reported its problem',
    );
    const web = await cli(d.dir, 'ready', '--name', 'web');
    assert.equal(web.code, 0, web.stdout);
    assert.match(web.stdout, /^ready web: generation 1, 1 watcher\(s\)/);
    const batch = await cli(d.dir, 'ready', '--name', 'batch', '--json');
    assert.equal(batch.code, EXIT.FAILURE);
    const doc = json(batch.stdout);
    assert.equal(doc.ready, false);
    assert.match(String((doc.outdated as Array<{ problem: string }>)[0]?.problem), /cannot re-key/);
    const all = await cli(d.dir, 'ready');
    assert.equal(all.code, EXIT.FAILURE, 'the machine-wide probe still fails');
    assert.match(all.stdout, /batch \(generation 1: cannot re-key/);
    const absent = await cli(d.dir, 'ready', '--name', 'nobody-here');
    assert.equal(absent.code, EXIT.FAILURE);
    assert.match(absent.stdout, /no watcher named "nobody-here" is connected/);
  });
});

describe('sysgenid --version', () => {
  it('shows client, protocol and daemon, and says when the daemon is not reachable', async (t) => {
    const d = await startDaemon(t);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runNode(CLI, ['--version', '--dir', d.dir]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `sysgenid ${pkg.version}\nprotocol sysgenid/1\nsysgenidd ${pkg.version} at ${d.dir}\n`);
    const j = json((await runNode(CLI, ['--version', '--json', '--dir', d.dir])).stdout);
    const daemon = { version: pkg.version, dir: d.dir, error: null };
    assert.deepEqual(j, { client: pkg.version, protocol: 'sysgenid/1', daemon });
    const absent = await runNode(CLI, ['--version', '--dir', path.join(tmpDir(t), 'absent')]);
    assert.equal(absent.code, 0);
    assert.match(absent.stdout, /^sysgenid .*\nprotocol sysgenid\/1\nsysgenidd not reachable \(cannot reach/);
  });
});
