// Opt-in Prometheus metrics: a daemon with --metrics-listen and --metrics-file is scraped over HTTP and
// through its textfile, and the names, types and values are checked after bumps and acknowledgements;
// /readyz and /healthz answer as `sysgenid ready` would. Without the options prom-client is never loaded.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { parseListen } from '../src/daemon/metrics-listen.js';
import { readiness, sourceLabel } from '../src/daemon/metrics.js';
import { DAEMON, RawClient, bump, eventually, runNode, startDaemon, tmpDir } from './helpers.js';

/** The samples of an exposition, by name with labels as written: `name{a="b"}` -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function types(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

async function get(base: string, p: string): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(`${base}${p}`);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
}

it('the endpoint and the textfile carry the metrics, their types and values that follow bumps and acks', async (t) => {
  const file = path.join(tmpDir(t), 'sysgenid.prom');
  const d = await startDaemon(t, {
    args: ['--metrics-listen', '127.0.0.1:0', '--metrics-file', file, '--metrics-interval', '60000'],
  });
  const where = await d.waitForLog(/metrics: http:\/\/127\.0\.0\.1:[0-9]+/);
  const base = where.replace(/^metrics: /, '');

  const tracked = await RawClient.open(d.paths.watch);
  t.after(() => tracked.c.close());
  assert.equal(await tracked.c.request('NAME web'), 'OK');
  const untracked = await RawClient.open(d.paths.watch);
  t.after(() => untracked.c.close());
  assert.equal(await untracked.c.request('TRACK OFF'), 'OK');

  await bump(d.dir);
  await bump(d.dir);
  // web is outdated now: not ready, for the machine and for the service by name.
  let m = await get(base, '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.type, /^text\/plain; version=0\.0\.4/);
  let s = samples(m.body);
  assert.equal(s.get('sysgenid_generation'), 2);
  assert.equal(s.get('sysgenid_bumps_total{source="forced"}'), 2);
  assert.equal(s.get('sysgenid_watchers{tracking="tracked"}'), 1);
  assert.equal(s.get('sysgenid_watchers{tracking="untracked"}'), 1);
  assert.equal(s.get('sysgenid_watchers_outdated'), 1);
  assert.equal(s.get('sysgenid_ready'), 0);
  assert.equal(s.get('sysgenid_restore_acknowledged_seconds_count'), 0);
  assert.equal((await get(base, '/readyz')).status, 503);
  const webNotReady = await get(base, '/readyz?service=web');
  assert.equal(webNotReady.status, 503);
  assert.match(webNotReady.body, /1 of 1 web watcher\(s\) outdated/);

  assert.equal(await tracked.c.request('ACK 2'), 'OK 2');
  m = await get(base, '/metrics');
  s = samples(m.body);
  assert.equal(s.get('sysgenid_watchers_outdated'), 0);
  assert.equal(s.get('sysgenid_ready'), 1);
  assert.equal(s.get('sysgenid_restore_acknowledged_seconds_count'), 1, 'one settle: the second bump to its ack');
  const sum = s.get('sysgenid_restore_acknowledged_seconds_sum') as number;
  assert.ok(sum > 0 && sum < 10, `settle time ${sum} s`);
  assert.equal(s.get('sysgenid_restore_acknowledged_seconds_bucket{le="+Inf"}'), 1);
  assert.equal(s.get('sysgenid_lifecycle_state{state="running"}'), 1);
  assert.equal(s.get('sysgenid_lifecycle_state{state="quiesced"}'), 0);
  assert.equal(s.get('sysgenid_backend_up{backend="forced"}'), 1);
  assert.equal(s.get('sysgenid_backend_up{backend="kmsg"}'), 0, 'the test daemon runs with --backends none');
  assert.equal(s.get('sysgenid_connections'), 2);
  const info = [...s.keys()].find((k) => k.startsWith('sysgenid_build_info{'));
  assert.match(info ?? '', /version="0\.1\.0",node="v[0-9.]+",addon="(yes|no)"/);
  assert.equal(info?.includes(`addon="${process.env.SYSGENID_NO_ADDON === '1' ? 'no' : 'yes'}"`), true);
  assert.deepEqual(Object.fromEntries([...types(m.body)].sort()), {
    sysgenid_backend_up: 'gauge',
    sysgenid_build_info: 'gauge',
    sysgenid_bumps_total: 'counter',
    sysgenid_connections: 'gauge',
    sysgenid_generation: 'gauge',
    sysgenid_lifecycle_state: 'gauge',
    sysgenid_ready: 'gauge',
    sysgenid_restore_acknowledged_seconds: 'histogram',
    sysgenid_watchers: 'gauge',
    sysgenid_watchers_outdated: 'gauge',
  });
  const ready = await get(base, '/readyz');
  assert.equal(ready.status, 200);
  assert.match(ready.body, /^ready: generation 2, 2 watcher\(s\), none outdated/);
  assert.equal((await get(base, '/readyz?service=web')).status, 200);
  const missing = await get(base, '/readyz?service=db');
  assert.equal(missing.status, 503);
  assert.match(missing.body, /no watcher named "db"/);
  const health = await get(base, '/healthz');
  assert.equal(health.status, 200);
  assert.equal(health.body, 'ok: generation 2\n');
  assert.equal((await get(base, '/nothing')).status, 404);

  // The textfile is rewritten after every bump and settle (the interval is a minute here), whole.
  const fromFile = (await eventually(
    (): string | false => {
      const text = fs.readFileSync(file, 'utf8');
      const f = samples(text);
      return f.get('sysgenid_restore_acknowledged_seconds_count') === 1 && f.get('sysgenid_watchers_outdated') === 0
        ? text
        : false;
    },
    5000,
    'the textfile after the ack',
  )) as string;
  assert.equal(samples(fromFile).get('sysgenid_bumps_total{source="forced"}'), 2);
  assert.deepEqual(types(fromFile), types(m.body));
  assert.equal(fs.statSync(file).mode & 0o777, 0o644);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['sysgenid.prom'], 'no temporary file is left beside it');
  await bump(d.dir);
  await eventually(
    () => samples(fs.readFileSync(file, 'utf8')).get('sysgenid_generation') === 3,
    5000,
    'the textfile after a bump',
  );
});

it('a newer bump before everyone acknowledged restarts the settle clock; a disconnect can settle it', async (t) => {
  const d = await startDaemon(t, { args: ['--metrics-listen', '0'] });
  const base = (await d.waitForLog(/metrics: http:\/\/127\.0\.0\.1:[0-9]+/)).replace(/^metrics: /, '');
  const w = await RawClient.open(d.paths.watch);
  await bump(d.dir);
  await bump(d.dir);
  assert.equal(await w.c.request('ACK 2'), 'OK 2');
  await bump(d.dir);
  w.c.close();
  const s = (await eventually(
    async () => {
      const x = samples((await get(base, '/metrics')).body);
      return x.get('sysgenid_restore_acknowledged_seconds_count') === 2 ? x : false;
    },
    5000,
    'two settles',
  )) as Map<string, number>;
  assert.equal(s.get('sysgenid_bumps_total{source="forced"}'), 3);
  assert.equal(s.get('sysgenid_watchers_outdated'), 0);
});

it('without a metrics option the daemon never loads prom-client; a bad address is a usage error', async (t) => {
  const d = await startDaemon(t, { env: { NODE_DEBUG: 'module' } });
  await d.stop();
  assert.doesNotMatch(d.log(), /prom-client/);
  const bad = await runNode(DAEMON, ['--dir', path.join(tmpDir(t), 'run'), '--metrics-listen', 'localhost:99999']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--metrics-listen needs PORT, HOST:PORT or \[V6\]:PORT/);
});

it('parses listen addresses, bounds source labels, and answers readiness as sysgenid ready does', () => {
  assert.deepEqual(parseListen('9469'), { host: '127.0.0.1', port: 9469 });
  assert.deepEqual(parseListen('0.0.0.0:9469'), { host: '0.0.0.0', port: 9469 });
  assert.deepEqual(parseListen('[::1]:9469'), { host: '::1', port: 9469 });
  assert.equal(parseListen('host:'), undefined);
  assert.equal(parseListen('70000'), undefined);
  assert.equal(sourceLabel('kmsg: VM fork (seq 342)'), 'kmsg');
  assert.equal(sourceLabel('forced by pid 12'), 'forced');
  assert.equal(sourceLabel('???'), 'other');
  const base = { generation: 4, watchers: 1, lifecycle: { state: 'running', ready: true } };
  const w = { id: 1, name: 'web', tracked: true, outdated: false };
  assert.equal(readiness({ ...base, list: [w] } as never, 'web').ready, true);
  assert.equal(
    readiness({ ...base, lifecycle: { state: 'quiesced', ready: false }, list: [w] } as never, 'web').ready,
    false,
  );
  assert.equal(
    readiness({ ...base, lifecycle: { state: 'adjusting', ready: false }, list: [] } as never, null).ready,
    false,
  );
  assert.equal(
    readiness({ ...base, lifecycle: { state: 'adjusting', ready: false }, list: [w] } as never, 'web').ready,
    true,
    'a service that re-adjusted is ready while others still re-adjust',
  );
});
