// The seed's four workflows under examples/ run against the real daemon, together.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { it } from 'node:test';
import { ROOT, bump, eventually, startDaemon, statusOf } from './helpers.js';

it('watchdog, event loop, mapped polling and orchestrator examples each handle two generations', async (t) => {
  const d = await startDaemon(t);
  const names = ['watchdog', 'event-loop', 'mapped-polling', 'orchestrator'];
  const runs = names.map((name) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'examples', `${name}.js`), '2'], {
      env: { ...process.env, SYSGENID_DIR: d.dir, NODE_EXTRA_CA_CERTS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    return { name, out: () => out, exited };
  });
  await eventually(() => runs.every((r) => r.out().includes('ready at generation 0')), 15_000, 'examples ready');
  // Three socket watchers; the probe user is not a watcher.
  await eventually(async () => (await statusOf(d.dir)).watchers === 3, 5000, 'watchers connected');
  for (const gen of [1, 2]) {
    await bump(d.dir);
    await eventually(
      () => runs.every((r) => r.out().includes(`generation ${gen}:`)),
      10_000,
      `generation ${gen} handled by all`,
    );
  }
  for (const r of runs) assert.equal(await r.exited, 0, `${r.name}:\n${r.out()}`);
  const by = Object.fromEntries(runs.map((r) => [r.name, r.out()]));
  assert.match(by.orchestrator ?? '', /generation 1: every watcher re-adjusted/);
  assert.match(by.orchestrator ?? '', /service resumed/);
  const secrets = (by.watchdog ?? '').match(/[0-9a-f]{32}/g) ?? [];
  assert.equal(new Set(secrets).size, 3, 'a fresh secret for every generation');
});
