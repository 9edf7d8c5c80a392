// docs/PROTOCOL.md and the daemon agree (issue 14): each behaviour a client written from the document
// alone found different, pinned over real sockets against the words of the document.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { quiesce } from '../src/client/admin.js';
import { CLI, ROOT, RawClient, bump, eventually, runNode, startDaemon, statusOf as statusOfDir } from './helpers.js';

const PROTOCOL = fs.readFileSync(path.join(ROOT, 'docs', 'PROTOCOL.md'), 'utf8');

async function subscriber(watch: string, name: string): Promise<RawClient> {
  const { c } = await RawClient.open(watch);
  assert.equal(await c.request(`NAME ${name}`), 'OK');
  assert.equal(await c.request('SUBSCRIBE'), 'OK running');
  return c;
}

describe('docs/PROTOCOL.md against the daemon', () => {
  it('OBSERVE resets acked to the counter, as the Semantics section says', async (t) => {
    assert.match(PROTOCOL, /Observers still have an `acked` value \(the counter when they connected or observed\)/);
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    await bump(d.dir);
    assert.equal(await c.next(), 'GEN 1');
    assert.equal(await c.request('OBSERVE'), 'OK');
    assert.match(await c.request('READ NONBLOCK'), /^ERR EAGAIN /, 'up to date once it observed');
    assert.equal(await c.request('WAIT 1000'), 'OK', 'no EINTR for a generation from before it observed');
  });

  it('FAILED needs its message', async (t) => {
    assert.match(PROTOCOL, /\| `FAILED <cycle> <message>` \|/);
    const d = await startDaemon(t);
    const a = await subscriber(d.paths.watch, 'a');
    t.after(() => a.close());
    const q = quiesce({ dir: d.dir });
    assert.equal(await a.next(), 'QUIESCE 1');
    assert.match(await a.request('FAILED 1'), /^ERR EINVAL .*message/);
    assert.match(await a.request('FAILED 1   '), /^ERR EINVAL /);
    a.send('FAILED 1 cannot drain\n');
    const lines = [await a.next(), await a.next()].sort();
    assert.deepEqual(lines, ['OK', 'UNQUIESCE 2 0']);
    a.send('UNQUIESCED 2\n');
    const report = await q;
    assert.equal(report.outcome, 'failed');
    assert.equal(report.steps[0]?.error, 'cannot drain');
  });

  it('the adjust-timeout log names the late watchers', async (t) => {
    assert.match(PROTOCOL, /un-quiesces anyway and logs who is\s+late/);
    const d = await startDaemon(t, { args: ['--adjust-timeout', '300'] });
    const a = await subscriber(d.paths.watch, 'a');
    const { c: laggard } = await RawClient.open(d.paths.watch);
    t.after(() => [a, laggard].forEach((x) => x.close()));
    assert.equal(await laggard.request('NAME laggard'), 'OK');
    const q = quiesce({ dir: d.dir });
    assert.equal(await a.next(), 'QUIESCE 1');
    a.send('QUIESCED 1\n');
    assert.equal(await a.next(), 'OK');
    assert.equal((await q).ok, true);
    await bump(d.dir);
    assert.equal(await a.next(), 'GEN 1');
    assert.equal(await a.request('ACK 1'), 'OK 1');
    const line = await d.waitForLog(/still outdated after the adjust timeout.*/, 5000);
    assert.match(line, /late: laggard \(#\d+\)/);
    assert.doesNotMatch(line, /late: .*\ba \(#/, 'the subscriber that acknowledged is not named');
  });

  it('every cycle report has a machine-readable outcome: ok, failed, late, interrupted, aborted', async (t) => {
    assert.match(PROTOCOL, /"outcome": "failed"/, 'the example report shows the field');
    const d = await startDaemon(t);
    const ok = await quiesce({ dir: d.dir, timeoutMs: 1000 });
    assert.equal(ok.outcome, 'ok');
    await runNode(CLI, ['resume', '--dir', d.dir]);

    const a = await subscriber(d.paths.watch, 'a');
    t.after(() => a.close());
    // Late: nobody answers within the budget. The un-quiesce that follows reaches `a` too, and the
    // report comes once that is answered.
    const pendingLate = quiesce({ dir: d.dir, timeoutMs: 200 });
    const told = await eventually(() => a.lines.find((l) => /^UNQUIESCE \d+ /.test(l)), 5000, 'told to continue');
    a.send(`UNQUIESCED ${String(told).split(' ')[1]}\n`);
    const late = await pendingLate;
    assert.equal(late.outcome, 'late');
    assert.equal(late.ok, false);
    await eventually(async () => (await runNode(CLI, ['ready', '--dir', d.dir])).code === 0, 5000, 'running');
    a.lines.length = 0;

    // Interrupted: a new generation while quiescing; the CLI's exit code reads the field.
    const pending = runNode(CLI, ['quiesce', '--json', '--dir', d.dir]);
    await eventually(() => a.lines.some((l) => /^QUIESCE \d+$/.test(l)), 5000, 'asked');
    await bump(d.dir);
    const r = await pending;
    assert.equal(r.code, EXIT.INTERRUPTED, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { outcome: string }).outcome, 'interrupted');
  });

  it("the cycle report has the fields of the document's example, in its order", async (t) => {
    const d = await startDaemon(t);
    const report = await quiesce({ dir: d.dir });
    const example = /\*\*The cycle report\*\*[\s\S]*?```json\n([\s\S]*?)```/.exec(PROTOCOL)?.[1] ?? '';
    const documented = Object.keys(JSON.parse(example) as object);
    assert.deepEqual(Object.keys(report), documented);
  });

  it('framing: \\r counts toward the 512 bytes, an empty line is EINVAL, a signed priority is accepted', async (t) => {
    assert.match(PROTOCOL, /512 bytes\*\* \(newline excluded, a `\\r` before it included\)/);
    assert.match(PROTOCOL, /An empty line .* is answered with `ERR EINVAL`/);
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    assert.equal(await c.request(`PING${' '.repeat(507)}\r`), 'OK', '512 bytes with the \\r');
    assert.match(await c.request(`PING${' '.repeat(508)}\r`), /^ERR E2BIG /, '513 bytes with the \\r');
    assert.match(await c.request(''), /^ERR EINVAL /);
    assert.match(await c.request('   '), /^ERR EINVAL /);
    assert.equal(await c.request('SUBSCRIBE -10'), 'OK running');
    assert.match(await c.request('UNSUBSCRIBE'), /^OK/);
    assert.match(await c.request('SUBSCRIBE +10'), /^ERR EINVAL /);
  });

  it("the greeting's id is the STATUS list id; watch-only verbs on control.sock", async (t) => {
    const d = await startDaemon(t);
    const { c, id } = await RawClient.open(d.paths.watch);
    const { c: ctl } = await RawClient.open(d.paths.control);
    t.after(() => [c, ctl].forEach((x) => x.close()));
    assert.equal(await c.request('NAME me'), 'OK');
    const s = JSON.parse((await ctl.request('STATUS')).slice(3)) as { list: Array<{ id: number; name: string }> };
    assert.deepEqual(
      s.list.map((w) => [w.id, w.name]),
      [[id, 'me']],
    );
    assert.match(await ctl.request('TRACK OFF'), /^ERR EINVAL /);
    assert.equal(await ctl.request('OBSERVE'), 'OK');
    assert.match(await ctl.request('SUBSCRIBE'), /^ERR EINVAL /);
    assert.match(await ctl.request('QUIESCED 1'), /^ERR EINVAL /);
    assert.match(await ctl.request('FAILED 1 x'), /^ERR EINVAL /);
  });

  it('RESUME with a generation the daemon has not reached makes the caller outdated at the current one', async (t) => {
    assert.match(PROTOCOL, /A generation the daemon has not reached/);
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    c.send('RESUME 7\n');
    assert.deepEqual([await c.next(), await c.next()].sort(), ['GEN 0', 'OK 0']);
    assert.equal(await c.request('ACK 0'), 'OK 0');
    assert.equal((await statusOfDir(d.dir)).outdated, 0);
  });

  it('ENOBUFS is sent at once, ahead of the reply still owed to the blocking request', async (t) => {
    assert.match(PROTOCOL, /`ERR ENOBUFS` \*\*at once, ahead of the replies\s+still owed\*\*/);
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    c.send(`PING\nREAD\n${'PING\n'.repeat(300)}`);
    assert.equal(await c.next(), 'OK');
    assert.match(await c.next(), /^ERR ENOBUFS /);
    await c.waitClosed();
  });

  it('the state file is one JSON object padded with spaces to 255 bytes and a newline', async (t) => {
    assert.match(PROTOCOL, /padded with spaces to 255 bytes and a `\\n` \(256 bytes\)/);
    const d = await startDaemon(t);
    await bump(d.dir);
    const raw = fs.readFileSync(d.paths.state, 'latin1');
    assert.equal(raw.length, 256);
    assert.match(raw, /^\{.*\} *\n$/);
    assert.equal((JSON.parse(raw) as { generation: number }).generation, 1);
  });
});
