// The sysgenid command's messages for the mistakes a new user makes (issue 14): "did you mean", plain
// words for a bad number, --count 0 refused, and watch's retries and wait for the daemon.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { CLI, DAEMON, ROOT, bump, eventually, runNode, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

describe('usage errors', () => {
  it('suggest the command or option meant', async () => {
    const cmd = await runNode(CLI, ['stauts']);
    assert.equal(cmd.code, EXIT.USAGE);
    assert.match(cmd.stderr, /unknown command "stauts"; did you mean "status"\?/);
    const opt = await runNode(CLI, ['status', '--jsn']);
    assert.equal(opt.code, EXIT.USAGE);
    assert.match(opt.stderr, /status does not take --jsn; did you mean "--json"\?/);
    const other = await runNode(CLI, ['status', '--timeout', '5']);
    assert.match(other.stderr, /status does not take --timeout/, 'an option of another command, by name');
  });

  it("say what a number must be instead of the parser's words", async () => {
    const r = await runNode(CLI, ['bump', '--min', '-1']);
    assert.equal(r.code, EXIT.USAGE);
    assert.match(r.stderr, /--min needs a whole number from 0 to 4294967295, got "-1"/);
    assert.doesNotMatch(r.stderr, /ambiguous/);
    const missing = await runNode(CLI, ['wait', '--timeout']);
    assert.match(missing.stderr, /--timeout needs a value/);
  });

  it('refuse --count 0 instead of watching for ever', async () => {
    const r = await runNode(CLI, ['watch', '--count', '0']);
    assert.equal(r.code, EXIT.USAGE);
    assert.match(r.stderr, /--count needs at least 1/);
  });

  it('sysgenidd prints one line and a pointer, not its whole help', async () => {
    const r = await runNode(DAEMON, ['--bogus']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 2, r.stderr);
    assert.match(r.stderr, /Run "sysgenidd --help" for usage/);
  });

  it('criu-action --help lists the options docs/CLI.md gives it', async () => {
    const help = (await runNode(CLI, ['criu-action', '--help'])).stdout;
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'CLI.md'), 'utf8');
    const synopsis = /^sysgenid criu-action (.*)$/m.exec(doc)?.[1] ?? '';
    assert.ok(synopsis.length > 0);
    for (const opt of synopsis.match(/--[a-z-]+/g) ?? []) assert.match(help, new RegExp(`^  ${opt}`, 'm'), opt);
    assert.match(help, new RegExp(`^Usage: sysgenid criu-action ${synopsis.replace(/[[\]]/g, '\\$&')}$`, 'm'));
    for (const action of ['pre-dump', 'post-dump', 'post-resume']) assert.match(help, new RegExp(action));
  });
});

describe('sysgenid watch', () => {
  it('retries a failing CMD with backoff and reports its failure to the daemon', async (t) => {
    const d = await startDaemon(t);
    const base = tmpDir(t);
    const flag = path.join(base, 'succeed');
    const log = path.join(base, 'log');
    const script = `echo "$SYSGENID" >> ${log}; test -e ${flag}`;
    const child = spawn(
      process.execPath,
      [CLI, 'watch', '--name', 'rekey', '--retry', '100', '--dir', d.dir, '--', 'sh', '-c', script],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    t.after(() => child.kill('SIGKILL'));
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    await eventually(async () => (await statusOf(d.dir)).watchers === 1, 5000, 'watcher connected');
    await bump(d.dir);
    await eventually(() => (err.match(/stays unacknowledged; trying again/g) ?? []).length >= 2, 5000, 'retried');
    const w = (await statusOf(d.dir)).list?.find((x) => x.name === 'rekey');
    assert.match(String(w?.problem), /generation 1: sh exited with 1/);
    const ready = await runNode(CLI, ['ready', '--dir', d.dir]);
    assert.equal(ready.code, EXIT.FAILURE);
    assert.match(ready.stdout, /rekey \(generation 1: sh exited with 1/, 'ready shows the reported failure');
    fs.writeFileSync(flag, '');
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged after a retry');
    assert.equal((await statusOf(d.dir)).list?.find((x) => x.name === 'rekey')?.problem, null, 'problem cleared');
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    assert.ok(lines.length >= 3 && lines.every((l) => l === '1'), lines.join(','));
  });

  it('runs CMD once for the latest of a burst, not once per generation', async (t) => {
    const d = await startDaemon(t);
    const base = tmpDir(t);
    const log = path.join(base, 'log');
    const child = spawn(
      process.execPath,
      [CLI, 'watch', '--dir', d.dir, '--', 'sh', '-c', `echo "$SYSGENID" >> ${log}; sleep 1`],
      { stdio: 'ignore' },
    );
    t.after(() => child.kill('SIGKILL'));
    await eventually(async () => (await statusOf(d.dir)).watchers === 1, 5000, 'watcher connected');
    await bump(d.dir);
    await eventually(() => fs.existsSync(log), 5000, 'first run');
    for (let i = 0; i < 5; i++) await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 10_000, 'latest acknowledged');
    assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['1', '6']);
  });

  it('waits for a daemon that starts after it', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const child = spawn(process.execPath, [CLI, 'watch', '--count', '1', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    await sleep(500);
    const d = await startDaemon(t, { dir });
    await eventually(async () => (await statusOf(d.dir)).watchers === 1, 10_000, 'watcher connected');
    await bump(d.dir);
    assert.equal(await exited, 0);
    assert.equal(out, '1\n');
  });

  it('--wait-for-daemon 0 fails at once with exit 7', async (t) => {
    const r = await runNode(CLI, ['watch', '--wait-for-daemon', '0', '--dir', path.join(tmpDir(t), 'absent')]);
    assert.equal(r.code, EXIT.UNREACHABLE);
  });
});
