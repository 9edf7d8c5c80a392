// sysgenid watch: it prints and acknowledges each generation, runs a command for it (acknowledging only
// when the command succeeds, retrying a failure with backoff and reporting it, once for the latest of a
// burst), and waits for a daemon that is not there yet (issue 14). `watch --json` is in cli-json.test.ts.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import {
  CLI,
  type DaemonHandle,
  type Launched,
  bump,
  eventually,
  runNode,
  sleep,
  startCli,
  startDaemon,
  statusOf,
  tmpDir,
} from './helpers.js';

/** A daemon, and `sysgenid watch OPTIONS [-- COMMAND]` on it once its watcher has connected. */
async function watching(
  t: TestContext,
  options: readonly string[],
  command: readonly string[] = [],
): Promise<{ d: DaemonHandle; watch: Launched }> {
  const d = await startDaemon(t);
  const watch = startCli(t, ['watch', ...options, '--dir', d.dir, ...(command.length > 0 ? ['--', ...command] : [])]);
  await eventually(async () => (await statusOf(d.dir)).watchers === 1, 5000, 'watcher connected');
  return { d, watch };
}

/** A COMMAND that appends the $SYSGENID of each run to `log` and fails until the file `flag` exists. */
function failsUntilFlag(t: TestContext): { command: string[]; flag: string; log: string } {
  const base = tmpDir(t);
  const flag = path.join(base, 'succeed');
  const log = path.join(base, 'log');
  return { command: ['sh', '-c', `echo "$SYSGENID" >> ${log}; test -e ${flag}`], flag, log };
}

describe('sysgenid watch', () => {
  it('prints and acknowledges each generation, and stops after --count', async (t) => {
    const { d, watch } = await watching(t, ['--name', 'printer', '--count', '2']);
    await bump(d.dir);
    await eventually(() => watch.stdout() === '1\n', 5000, 'first generation printed');
    // It prints, then acknowledges: the acknowledgement may land just after the line.
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'first generation acknowledged');
    await bump(d.dir);
    assert.equal(await watch.closed, 0);
    assert.equal(watch.stdout(), '1\n2\n');
  });

  it('-- CMD runs CMD with SYSGENID and acknowledges only when it exits 0', async (t) => {
    const cmd = failsUntilFlag(t);
    // A retry only after ten minutes: this test is about the next generation, not the retry.
    const { d, watch } = await watching(t, ['--retry', '600000'], cmd.command);
    await bump(d.dir);
    await eventually(() => watch.stderr().includes('generation 1 stays unacknowledged'), 5000, 'failure reported');
    assert.equal((await statusOf(d.dir)).outdated, 1, 'a failing command leaves it outdated');
    fs.writeFileSync(cmd.flag, '');
    await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged after success');
    assert.equal(fs.readFileSync(cmd.log, 'utf8'), '1\n2\n');
  });

  it('retries a failing CMD with backoff and reports its failure to the daemon', async (t) => {
    const cmd = failsUntilFlag(t);
    const { d, watch } = await watching(t, ['--name', 'rekey', '--retry', '100'], cmd.command);
    await bump(d.dir);
    await eventually(
      () => (watch.stderr().match(/stays unacknowledged; trying again/g) ?? []).length >= 2,
      5000,
      'retried',
    );
    const w = (await statusOf(d.dir)).list?.find((x) => x.name === 'rekey');
    assert.match(String(w?.problem), /generation 1: sh exited with 1/);
    const ready = await runNode(CLI, ['ready', '--dir', d.dir]);
    assert.equal(ready.code, EXIT.FAILURE);
    assert.match(ready.stdout, /rekey \(generation 1: sh exited with 1/, 'ready shows the reported failure');
    fs.writeFileSync(cmd.flag, '');
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged after a retry');
    assert.equal((await statusOf(d.dir)).list?.find((x) => x.name === 'rekey')?.problem, null, 'problem cleared');
    const lines = fs.readFileSync(cmd.log, 'utf8').trim().split('\n');
    assert.ok(lines.length >= 3 && lines.every((l) => l === '1'), lines.join(','));
  });

  it('runs CMD once for the latest of a burst, not once per generation', async (t) => {
    const log = path.join(tmpDir(t), 'log');
    const { d } = await watching(t, [], ['sh', '-c', `echo "$SYSGENID" >> ${log}; sleep 1`]);
    await bump(d.dir);
    await eventually(() => fs.existsSync(log), 5000, 'first run');
    for (let i = 0; i < 5; i++) await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 10_000, 'latest acknowledged');
    assert.deepEqual(fs.readFileSync(log, 'utf8').trim().split('\n'), ['1', '6']);
  });

  it('waits for a daemon that starts after it', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const watch = startCli(t, ['watch', '--count', '1', '--dir', dir]);
    await sleep(500);
    const d = await startDaemon(t, { dir });
    await eventually(async () => (await statusOf(d.dir)).watchers === 1, 10_000, 'watcher connected');
    await bump(d.dir);
    assert.equal(await watch.closed, 0);
    assert.equal(watch.stdout(), '1\n');
  });

  it('--wait-for-daemon 0 fails at once with exit 7', async (t) => {
    const r = await runNode(CLI, ['watch', '--wait-for-daemon', '0', '--dir', path.join(tmpDir(t), 'absent')]);
    assert.equal(r.code, EXIT.UNREACHABLE);
  });
});
