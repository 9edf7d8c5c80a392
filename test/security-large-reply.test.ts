// Large replies pipelined on one connection (found by the attack pass on issue 11): a second STATUS
// sent before the first was read used to start streaming over the first and never gave its large-reply
// slot back, so two such connections left their user (root included) without STATUS for good.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RawClient, startDaemon } from './helpers.js';

describe('large replies pipelined on one connection', () => {
  it('each is answered whole and in order, and the slots are given back', async (t) => {
    // A small backlog bound makes the STATUS of 600 watchers a "large" reply, streamed in 64 KiB chunks,
    // more than one each.
    const d = await startDaemon(t, { args: ['--max-backlog', '4096'] });
    const watchers: RawClient[] = [];
    t.after(() => watchers.forEach((w) => w.close()));
    for (let i = 0; i < 600; i++) watchers.push((await RawClient.open(d.paths.watch)).c);

    const check = (line: string, what: string): void => {
      assert.ok(line.startsWith('OK {'), `${what}: ${line.slice(0, 80)}`);
      assert.ok(line.length > 64 * 1024, `${what} is a large reply of more than one chunk (${line.length} bytes)`);
      const doc = JSON.parse(line.slice(3)) as { watchers: number };
      assert.ok(doc.watchers >= 600, what);
    };
    // Twice as many as the per-user slots in one write, on one connection and then on another of the
    // same user (each used to leak a slot: the user has two).
    const pipelined = [(await RawClient.open(d.paths.watch)).c, (await RawClient.open(d.paths.watch)).c];
    t.after(() => pipelined.forEach((c) => c.close()));
    for (const [i, c] of pipelined.entries()) {
      c.send('STATUS\nSTATUS\nSTATUS\nSTATUS\nPING\n');
      for (let n = 0; n < 4; n++) check(await c.next(10_000), `connection ${i} reply ${n}`);
      assert.match(await c.next(), /^OK$/, 'the small reply comes after the large ones, in order');
    }
    // Every slot was given back: a fresh connection of the same user is still answered, more than twice.
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    for (let n = 0; n < 3; n++) check(await c.request('STATUS', 10_000), `later STATUS ${n}`);
  });
});
