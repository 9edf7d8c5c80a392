// The lifecycle examples a Node developer would copy, run together against the real daemon through a
// snapshot of the original and a restore.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { it } from 'node:test';
import { quiesce, unquiesce } from '../src/client/admin.js';
import { ROOT, bump, eventually, startDaemon, statusOf, tmpDir } from './helpers.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function get(port: number): Promise<{ instance: string; keyId: string; generation: number }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (body += d))
          .on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

it('HTTP server, connection pool and session keys: drain and close on quiesce, re-open after, new keys only in a copy', async (t) => {
  const d = await startDaemon(t);
  const port = await freePort();
  // The pool example binds its stand-in database socket in the temp directory; killed, it cannot remove it.
  const tmp = tmpDir(t);
  const run = (name: string, args: string[] = []) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'examples', `${name}.js`), ...args], {
      env: { ...process.env, SYSGENID_DIR: d.dir, PORT: String(port), NODE_EXTRA_CA_CERTS: '', TMPDIR: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    return { out: () => out, exited: new Promise<number | null>((r) => child.on('close', r)) };
  };
  const server = run('http-server');
  const pool = run('connection-pool');
  const keys = run('session-keys', ['2']);
  await eventually(
    () => [server, pool, keys].every((p) => /ready at generation 0/.test(p.out())),
    15_000,
    'examples ready',
  );
  assert.match(pool.out(), /4 connections, echo ping/);
  const before = await get(port);
  assert.equal(before.generation, 0);

  // The original: quiesced for the snapshot, then resumed with the same identity.
  const q = await quiesce({ dir: d.dir });
  assert.equal(q.ok, true, q.reason ?? '');
  // The pool has priority -10: quiesced last, resumed first.
  assert.deepEqual(q.steps.map((s) => s.name).at(-1), 'connection-pool');
  await assert.rejects(get(port), /ECONNREFUSED/, 'not accepting while quiesced');
  assert.match(pool.out(), /quiesced: every connection closed/);
  const u = await unquiesce({ dir: d.dir });
  assert.equal(u.ok, true, u.reason ?? '');
  assert.equal(u.steps[0]?.name, 'connection-pool');
  const same = await get(port);
  assert.deepEqual(same, before, 'the original keeps its identity');

  // A restored copy: quiesced at the snapshot, then its backend bumps; it resumes by itself.
  assert.equal((await quiesce({ dir: d.dir })).ok, true);
  await bump(d.dir);
  await eventually(
    async () => ((await statusOf(d.dir)).lifecycle as { state: string }).state === 'running',
    10_000,
    'resumed after re-adjusting',
  );
  const after = await get(port);
  assert.equal(after.generation, 1);
  assert.notEqual(after.keyId, before.keyId, 'a new session key');
  assert.notEqual(after.instance, before.instance, 'a new instance id');
  const log = server.out();
  assert.ok(
    log.indexOf('generation 1: new session key') < log.indexOf('resumed at generation 1 (a restored copy)'),
    log,
  );
  assert.match(pool.out(), /resumed at generation 1 \(a restored copy\): 4 connections/);

  await bump(d.dir);
  assert.equal(await keys.exited, 0, keys.out());
  assert.equal((keys.out().match(/instance [0-9a-f-]{36}/g) ?? []).length, 3);
  assert.equal(new Set(keys.out().match(/instance [0-9a-f-]{36}/g)).size, 3, 'a new identity for every generation');
});
