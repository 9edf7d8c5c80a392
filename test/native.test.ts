// The optional addon and its fallback. npm test runs the whole suite twice, with the addon and with
// SYSGENID_NO_ADDON=1; this file checks that each run really uses the path it claims to.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { it } from 'node:test';
import { forceUpdate, openProbe, status } from '../src/client/index.js';
import { addon, addonState } from '../src/native/addon.js';
import { ROOT, RawClient, startDaemon } from './helpers.js';

const forced = process.env.SYSGENID_NO_ADDON === '1';
const built = fs.existsSync(`${ROOT}/build/Release/sysgenid.node`);
const isRoot = process.getuid?.() === 0;

it('uses the addon when it is built and not disabled, and says why not otherwise', () => {
  if (forced) {
    assert.equal(addon(), undefined);
    assert.equal(addonState(), 'disabled by SYSGENID_NO_ADDON=1');
  } else if (built) {
    assert.ok(addon());
    assert.equal(addonState(), 'loaded');
  } else if (fs.existsSync(`${ROOT}/prebuilds/${process.platform}-${process.arch}`)) {
    assert.match(addonState(), /^loaded \(prebuilt prebuilds\//);
  } else {
    assert.match(addonState(), /not built/);
  }
});

it('the probe maps the page with the addon and reads it with pread without; both see every change', async (t) => {
  const d = await startDaemon(t);
  const probe = openProbe({ dir: d.dir });
  t.after(() => probe.close());
  assert.equal(probe.mapped, addon() !== undefined);
  for (let i = 1; i <= 5; i++) {
    const gen = await forceUpdate({ dir: d.dir });
    assert.equal(probe.generation(), gen, 'a pwrite by the daemon is visible through the mapping at once');
  }
  const s = await status({ dir: d.dir });
  assert.equal(s.native, addonState(), 'the daemon runs the same path as this test');
});

it("the daemon verifies a watcher's pid, uid and command with the addon, and marks claims without", async (t) => {
  const d = await startDaemon(t);
  const { c } = await RawClient.open(d.paths.watch);
  t.after(() => c.close());
  await c.request('PID 1');
  const w = (await status({ dir: d.dir })).list?.[0];
  if (addon()) {
    assert.deepEqual([w?.pid, w?.pidVerified, w?.uid, w?.command], [process.pid, true, process.getuid?.(), 'node']);
  } else {
    assert.deepEqual([w?.pid, w?.pidVerified, w?.uid, w?.command], [1, false, null, null]);
  }
});

it('a mapped probe cannot be written through: the view is not reachable from the API', async (t) => {
  const d = await startDaemon(t);
  const probe = openProbe({ dir: d.dir });
  t.after(() => probe.close());
  const visible = Object.values(probe).concat(
    Object.getOwnPropertyNames(Object.getPrototypeOf(probe)).map((k) => {
      try {
        return (probe as unknown as Record<string, unknown>)[k];
      } catch {
        return undefined;
      }
    }),
  );
  assert.ok(
    !visible.some((v) => ArrayBuffer.isView(v) || v instanceof ArrayBuffer),
    'no typed array or buffer exposed',
  );
});

it('the probe benchmark runs and reports every figure (smoke test, no timing asserted)', async () => {
  const { runNode } = await import('./helpers.js');
  const r = await runNode(`${ROOT}/dist/bench/probe.js`, ['--json', '--quick']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { nsPerRead: Record<string, number | null> };
  assert.ok((report.nsPerRead.heapTypedArray ?? 0) > 0);
  assert.ok((report.nsPerRead.pread ?? 0) > 0);
  assert.equal(report.nsPerRead.mappedPage === null, addon() === undefined);
});

it('a failed addon build prints one clear warning and never fails the install', async () => {
  const { runNode } = await import('./helpers.js');
  const r = await runNode(`${ROOT}/scripts/build-addon.js`, [], {
    npm_config_node_gyp: '/nonexistent/node-gyp.js',
    PATH: '/nonexistent',
    SYSGENID_NO_ADDON: '0',
    // Past a prebuilt binary (prebuilds/, made by npm pack), to the build that fails here.
    npm_config_build_from_source: 'true',
  });
  assert.equal(r.code, 0);
  assert.match(r.stderr, /WARNING: the optional native addon could not be built/);
  assert.match(r.stderr, /pure-JS fallback/);
  assert.ok(fs.existsSync(`${ROOT}/build/Release/sysgenid.node`) === built, 'an existing build is left alone');
});

it('the cycle benchmark runs at tiny sizes and reports every figure (smoke test, no timing asserted)', async () => {
  const { runNode } = await import('./helpers.js');
  const r = await runNode(`${ROOT}/dist/bench/run.js`, ['--json', '--quick', '--sizes', '8,16']);
  assert.equal(r.code, 0, r.stderr);
  type Stats = { p50: number; p99: number; max: number };
  const report = JSON.parse(r.stdout) as {
    cycle: Record<
      string,
      {
        ackedMs: Stats;
        notifiedMs: Stats;
        epollReferenceAckedMs: Stats | null;
        netlinkReferenceNotifiedMs: Stats | null;
        rssBytesPerWatcher: number;
      }
    >;
    slopeUsPerWatcher: Record<string, number | null>;
    detection: { pageWrittenMs: Stats; firstWatcherMs: Stats } | string;
    netlinkReference: string;
    startup: { daemon: number; bare: number };
  };
  for (const n of ['8', '16']) {
    assert.ok((report.cycle[n]?.ackedMs.p50 ?? 0) > 0);
    assert.ok((report.cycle[n]?.epollReferenceAckedMs?.p50 ?? 0) > 0, 'the C epoll reference ran (CI has a compiler)');
  }
  assert.equal(typeof report.slopeUsPerWatcher.daemonAcked, 'number');
  assert.ok(report.startup.daemon > 0 && report.startup.bare > 0);
  // The kernel reference needs root and a compiler, detection root and the addon; without them each
  // says why it was skipped.
  if (report.netlinkReference === 'measured') assert.ok((report.cycle['16']?.netlinkReferenceNotifiedMs?.p50 ?? 0) > 0);
  else assert.match(report.netlinkReference, /^skipped: /);
  if (typeof report.detection === 'object') assert.ok(report.detection.firstWatcherMs.p50 > 0);
  else assert.match(report.detection, /^skipped: /);
  if (isRoot && built) assert.equal(typeof report.detection, 'object', 'root with the addon measures detection');
});

it(
  'a watch on a descriptor stays active after its handle is dropped and collected, until close()',
  { skip: forced || !built ? 'needs the addon' : false },
  async () => {
    const { runNode } = await import('./helpers.js');
    // A pipe written every few ms, a watch whose handle is thrown away, and a forced collection between writes.
    const r = await runNode('--expose-gc', [
      '-e',
      `
    const a = require(${JSON.stringify(`${ROOT}/build/Release/sysgenid.node`)});
    const fs = require('node:fs');
    const pipe = require('node:os').tmpdir() + '/sysgenid-gc-' + process.pid;
    require('node:child_process').execFileSync('mkfifo', [pipe]);
    const r = fs.openSync(pipe, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const w = fs.openSync(pipe, 'w');
    let seen = 0; const buf = Buffer.alloc(64);
    a.watchFd(r, 1, () => { try { seen += fs.readSync(r, buf); } catch {} });
    let n = 0;
    const tick = () => { global.gc(); fs.writeSync(w, 'x'); if (++n < 20) setTimeout(tick, 5); else setTimeout(() => { fs.unlinkSync(pipe); console.log(seen); process.exit(0); }, 50); };
    tick();`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Number(r.stdout.trim()), 20);
  },
);

it(
  'unixListening asks the kernel whether a socket listens at a path, and never about a truncated one',
  { skip: forced || !built ? 'needs the addon' : false },
  async (t) => {
    const { execFileSync } = await import('node:child_process');
    const net = await import('node:net');
    const os = await import('node:os');
    const { tmpDir } = await import('./helpers.js');
    const a = addon();
    assert.ok(a?.unixListening);
    const { ECONNREFUSED, ENOENT, ENAMETOOLONG } = os.constants.errno;
    const dir = tmpDir(t);
    assert.equal(a.unixListening(`${dir}/none.sock`), -ENOENT);
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((resolve) => server.listen(`${dir}/live.sock`, resolve));
    t.after(() => server.close());
    assert.equal(a.unixListening(`${dir}/live.sock`), 0);
    // A socket file nobody listens on, as a daemon killed with -9 leaves it.
    execFileSync('python3', [
      '-c',
      'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])',
      `${dir}/dead.sock`,
    ]);
    assert.ok(fs.lstatSync(`${dir}/dead.sock`).isSocket());
    assert.equal(a.unixListening(`${dir}/dead.sock`), -ECONNREFUSED);
    // Longer than a socket address holds: refused, not cut to a prefix that may name another socket.
    assert.equal(a.unixListening(`${dir}/${'x'.repeat(120)}`), -ENAMETOOLONG);
  },
);
