// Snapshot-safe random values: two clones that start from one memory image produce different values
// once their generations differ, and identical ones when nothing told them they were cloned.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { GenerationScoped, SafeRandom, openProbe } from '../src/client/index.js';
import { encodeU32 } from '../src/protocol/page-format.js';
import { DIST, runNode, tmpDir } from './helpers.js';

function makePage(dir: string, name: string, gen: number): string {
  const file = path.join(dir, name);
  const b = Buffer.alloc(4096);
  encodeU32(gen, b);
  fs.writeFileSync(file, b);
  return file;
}

function setPage(file: string, gen: number): void {
  const b = encodeU32(gen);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, b, 0, 4, 0);
  fs.closeSync(fd);
}

describe('snapshot-safe helpers', () => {
  it('two clones of one image: identical values while unaware, different values after their bumps', async (t) => {
    const dir = tmpDir(t);
    const image = crypto.randomBytes(256).toString('hex');
    const clone = async (name: string, bumpTo: number) => {
      const page = makePage(dir, name, 0);
      const r = await runNode(path.join(DIST, 'test/fixtures/clone.js'), [page, String(bumpTo)], { CLONE_POOL: image });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, string | number>;
    };
    // Negative control: nothing bumped, so both copies replay the image's cached entropy.
    const [u1, u2] = await Promise.all([clone('u1', 0), clone('u2', 0)]);
    assert.equal(u1.uuid, u2.uuid, 'the control shows the duplication the helpers exist to prevent');
    assert.equal(u1.bytes, u2.bytes);
    // Two clones whose daemons bumped (to different values, as two restored VMs would).
    const [a, b] = await Promise.all([clone('a', 1), clone('b', 1)]);
    for (const key of ['uuid', 'v7', 'bytes', 'sessionKey']) {
      assert.notEqual(a[key], b[key], key);
      assert.notEqual(a[key], u1[key], `${key} is not the image's`);
    }
    assert.match(String(a.uuid), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(String(a.v7), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('UUIDv7 values are time-ordered within a generation and restart their sequence after a change', (t) => {
    const dir = tmpDir(t);
    const page = makePage(dir, 'generation', 0);
    const probe = openProbe({ path: page });
    t.after(() => probe.close());
    const r = new SafeRandom({ probe });
    const ms = 1_700_000_000_000;
    const ids = Array.from({ length: 5000 }, () => r.uuidv7(ms));
    const sorted = [...ids].sort();
    assert.deepEqual(ids, sorted, 'monotonic, also within one millisecond');
    assert.equal(new Set(ids).size, ids.length);
    assert.equal(ids[0]?.slice(0, 13), '018bcfe5-6800', 'the timestamp prefix');
    setPage(page, 1);
    const after = r.uuidv7(ms);
    assert.ok(r.generation === 1);
    assert.ok(!ids.includes(after));
  });

  it('a generation-scoped value is computed once per generation', (t) => {
    const dir = tmpDir(t);
    const page = makePage(dir, 'generation', 3);
    const probe = openProbe({ path: page });
    t.after(() => probe.close());
    let computed = 0;
    const scoped = new GenerationScoped(probe, (g) => `key-${g}-${++computed}`);
    assert.equal(scoped.get(), 'key-3-1');
    assert.equal(scoped.get(), 'key-3-1');
    setPage(page, 4);
    assert.equal(scoped.get(), 'key-4-2');
    scoped.reset();
    assert.equal(scoped.get(), 'key-4-3');
  });

  it('random bytes of any size, and the pool is refilled rather than reused', (t) => {
    const dir = tmpDir(t);
    const probe = openProbe({ path: makePage(dir, 'generation', 0) });
    t.after(() => probe.close());
    const r = new SafeRandom({ probe, poolSize: 64 });
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(r.randomBytes(16).toString('hex'));
    assert.equal(seen.size, 200);
    assert.equal(r.randomBytes(1000).length, 1000);
  });
});
