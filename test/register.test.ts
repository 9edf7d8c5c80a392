// sysgenid/register (issue 13): every guarded entry point reseeds synchronously when the page moved and
// never when it did not, from ES module named imports and from CommonJS; the watcher reseeds before it
// acknowledges; vmclock's counter is checked too; without the addon the JavaScript entry points answer
// from the kernel and the process says so (stderr and the daemon's status). Run once as is (the addon,
// if built) and once with SYSGENID_NO_ADDON=1, like every suite. The clone itself is proven end to end
// (test/e2e/clone.e2e.ts): two real clones print different values with the flag, the same without.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import readline from 'node:readline';
import { addon } from '../src/native/addon.js';
import { DIST, ROOT, bump, eventually, runNode, startDaemon, statusOf, tmpDir } from './helpers.js';
// Keeps the CommonJS fixture in the compiled tree (tsconfig includes *.ts only).
import type {} from './register-fixture-cjs.cjs';

const ESM_ENTRY = path.join(DIST, 'src/client/register.js');
const CJS_ENTRY = path.join(DIST, 'register.cjs');
const native = addon()?.opensslReseed !== undefined;
const SCENARIOS = 23;
// Entry points whose output the kernel replaces when OpenSSL cannot be reseeded.
const KERNEL_VARIANTS = new Set([
  'randomBytes',
  'randomBytes(cb)',
  'randomFillSync',
  'randomFill',
  'randomUUID',
  'randomInt',
  'randomInt(cb)',
  'getRandomValues',
  'webcrypto.getRandomValues',
  'globalThis.crypto.getRandomValues',
  'webcrypto.randomUUID',
]);
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
type Run = { code: number | null; stdout: string; stderr: string };

interface ScenarioLine {
  name: string;
  quietWithoutChange: boolean;
  reseededOnce: boolean;
  trigger: string;
  triggerOk: boolean;
  generation: number;
  expectedGeneration: number;
  mode: string;
  opensslOk: boolean;
  kernelCalls: number;
  value: string | number | null;
}

/** A page with no daemon beside it: named by SYSGENID_PAGE, which the probe checks for its owner only. */
function pageEnv(dir: string): Record<string, string> {
  return { SYSGENID_DIR: dir, SYSGENID_PAGE: path.join(dir, 'generation') };
}

function pageDir(t: Parameters<typeof tmpDir>[0]): string {
  const dir = tmpDir(t, 'sysgenid-register-');
  fs.writeFileSync(path.join(dir, 'generation'), Buffer.alloc(4096));
  return dir;
}

for (const kind of ['esm', 'cjs'] as const) {
  const how = kind === 'esm' ? 'ES module named imports, --import' : 'CommonJS, -r';
  test(`every guarded entry point (${how}, ${native ? 'addon' : 'no addon'})`, async (t) => {
    const dir = pageDir(t);
    const fixture = path.join(DIST, 'test', kind === 'esm' ? 'register-fixture-esm.js' : 'register-fixture-cjs.cjs');
    const flags = kind === 'esm' ? ['--import', ESM_ENTRY] : ['-r', CJS_ENTRY];
    const r = await runNodeWith(flags, fixture, pageEnv(dir));
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ScenarioLine);
    assert.equal(lines.length, SCENARIOS, r.stdout);
    for (const s of lines) {
      await t.test(s.name, () => {
        assert.ok(s.quietWithoutChange, `${s.name} reseeded although the generation had not moved`);
        assert.ok(s.reseededOnce, `${s.name} did not reseed once after the page moved`);
        assert.ok(s.triggerOk, `${s.name} was not the trigger (${s.trigger})`);
        assert.equal(s.generation, s.expectedGeneration);
        if (native) {
          assert.equal(s.mode, 'openssl');
          assert.ok(s.opensslOk, "the primary DRBG's reseed counter moved in every copy of OpenSSL");
          assert.equal(s.kernelCalls, 0);
        } else {
          assert.equal(s.mode, 'kernel');
          if (KERNEL_VARIANTS.has(s.name)) assert.ok(s.kernelCalls >= 1, `${s.name} answered from the kernel`);
        }
        if (s.name.includes('randomUUID')) assert.match(String(s.value), UUID_V4);
        if (s.name.startsWith('randomFill')) assert.equal(s.value, 'outside untouched: true');
        if (s.name === 'randomInt') assert.ok(typeof s.value === 'number' && s.value >= 10 && s.value < 1000);
        if (s.name === 'randomInt(cb)') assert.ok(typeof s.value === 'number' && s.value >= 0 && s.value < 1000);
      });
    }
    if (native) assert.doesNotMatch(r.stderr, /cannot reseed OpenSSL/);
    else assert.match(r.stderr, /cannot reseed OpenSSL in this process: .*NOT clone-safe/);
  });
}

test('the package name resolves: --import sysgenid/register is the ES module, -r the CommonJS bundle', async (t) => {
  const dir = pageDir(t);
  const code =
    'const s = globalThis[Symbol.for("sysgenid.register")]; ' +
    'console.log(JSON.stringify([!!s, require("crypto").randomBytes.name]))';
  for (const flag of ['--import', '-r']) {
    const r = await runNodeWith([flag, 'sysgenid/register', '-e', code], undefined, pageEnv(dir), ROOT);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [true, 'randomBytes'], flag);
  }
  const which = 'console.log(require.resolve("sysgenid/register")); import("sysgenid/register").then(() => undefined)';
  const r = await runNodeWith(['-e', which], undefined, pageEnv(dir), ROOT);
  assert.equal(r.stdout.trim(), CJS_ENTRY);
});

test("a process without the flag is not guarded (the check is the flag's, not the test's)", async (t) => {
  const dir = pageDir(t);
  const r = await runNode(path.join(DIST, 'test', 'register-fixture-esm.js'), [], pageEnv(dir));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /sysgenid\/register is not loaded/);
});

test('ES module named imports see the guarded functions; the originals keep their name and length', async (t) => {
  const dir = pageDir(t);
  const code =
    'import { randomBytes, randomUUID } from "node:crypto"; import c from "node:crypto";' +
    'console.log(JSON.stringify([randomBytes === c.randomBytes, randomBytes.name, randomBytes.length, ' +
    'randomUUID === c.randomUUID, ' +
    '/guard/.test(randomBytes.toString())]))';
  const r = await runNodeWith(['--import', ESM_ENTRY, '--input-type=module', '-e', code], undefined, pageEnv(dir));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [true, 'randomBytes', 2, true, true]);
});

test("with a daemon: the register reseeds before it acknowledges; a handler's first crypto call is fresh", async (t) => {
  const d = await startDaemon(t);
  const app = path.join(DIST, 'test', 'register-fixture-app.js');
  const child = spawn(process.execPath, ['--import', ESM_ENTRY, app], {
    env: { ...process.env, SYSGENID_DIR: d.dir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const lines: Array<Record<string, unknown>> = [];
  readline
    .createInterface({ input: child.stdout })
    .on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  await eventually(() => lines.some((l) => l.ready), 10_000, 'the app');
  const registerEntry = async (): Promise<Record<string, unknown> | undefined> =>
    (await statusOf(d.dir)).list?.find((w) => String(w.name).startsWith('register '));
  const registered = (await eventually(registerEntry, 10_000, 'the register watcher')) as Record<string, unknown>;
  assert.equal(registered.tracked, true);
  await bump(d.dir);
  await eventually(async () => (await statusOf(d.dir)).outdated === 0, 10_000, 'every watcher acknowledged');
  const handler = (await eventually(() => lines.find((l) => l.handler === 1), 5000, 'the app handler')) as Record<
    string,
    unknown
  >;
  assert.equal(handler.registerGeneration, 1, "the app handler's crypto call came after the reseed for generation 1");
  assert.ok((handler.reseeds as number) >= 1);
  child.stdin.write('state\n');
  const s = (await eventually(() => lines.find((l) => l.state), 5000, 'the state')) as {
    state: { reseeds: number; acknowledged: number; last: { generation: number; mode: string }; problem: string };
    ackedAtReseed: Array<number | null>;
  };
  assert.equal(s.state.reseeds, 1, "one reseed for one generation (the watcher's and the guard's are the same)");
  assert.equal(s.state.last.generation, 1);
  assert.equal(s.state.acknowledged, 1);
  assert.deepEqual(s.ackedAtReseed, [0], 'at the reseed, generation 1 was not acknowledged yet');
  const entry = await registerEntry();
  if (native) {
    assert.equal(s.state.last.mode, 'openssl');
    assert.equal(entry?.problem ?? null, null);
    assert.doesNotMatch(stderr, /cannot reseed/);
  } else {
    assert.equal(s.state.last.mode, 'kernel');
    assert.match(String(entry?.problem), /^OpenSSL not reseeded \(.*\): TLS, key generation, \(EC\)DH not clone-safe/);
    assert.match(stderr, /sysgenid\/register: generation 1 \(.*\): cannot reseed OpenSSL in this process/);
  }
  child.stdin.write('exit\n');
});

test('a TLS server made before a change gets new session ticket keys at the reseed', async (t) => {
  const dir = pageDir(t);
  const code = `
    import fs from 'node:fs'; import tls from 'node:tls'; import crypto from 'node:crypto';
    const server = tls.createServer({
      ciphers: 'PSK-AES128-GCM-SHA256', maxVersion: 'TLSv1.2', pskCallback: () => Buffer.alloc(32) });
    const before = server.getTicketKeys().toString('hex');
    crypto.randomBytes(4);
    const same = server.getTicketKeys().toString('hex');
    const b = Buffer.alloc(4); b.writeUInt32LE(1);
    const fd = fs.openSync(process.env.SYSGENID_DIR + '/generation', 'r+');
    fs.writeSync(fd, b, 0, 4, 0);
    fs.closeSync(fd);
    crypto.randomBytes(4);
    const after = server.getTicketKeys().toString('hex');
    console.log(JSON.stringify({ unchangedWithoutChange: before === same, rotated: before !== after }));`;
  const r = await runNodeWith(['--import', ESM_ENTRY, '--input-type=module', '-e', code], undefined, pageEnv(dir));
  assert.equal(r.code, 0, r.stderr);
  // Without the addon the new keys come from the kernel.
  assert.deepEqual(JSON.parse(r.stdout), { unchangedWithoutChange: true, rotated: true });
});

test("a program that would exit on its own still exits: the register's watcher never holds it", async (t) => {
  const d = await startDaemon(t);
  const t0 = Date.now();
  const code = 'require("crypto").randomBytes(8); setTimeout(() => console.log("done"), 300)';
  const r = await runNodeWith(['--import', ESM_ENTRY, '-e', code], undefined, { SYSGENID_DIR: d.dir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done');
  assert.ok(Date.now() - t0 < 5000);
});

const vmclockSkip = { skip: !native && 'mapping the device needs the addon' };
test(
  'vmclock: a moved vm_generation_counter reseeds at the next call, before the page moves',
  vmclockSkip,
  async (t) => {
    const dir = pageDir(t);
    const vmclock = path.join(dir, 'vmclock');
    const page = Buffer.alloc(4096);
    page.writeUInt32LE(0x4b4c4356, 0);
    page.writeBigUInt64LE(1n << 8n, 24);
    page.writeBigUInt64LE(1n, 0x68);
    fs.writeFileSync(vmclock, page);
    const fixture = path.join(DIST, 'test', 'register-fixture-vmclock.js');
    const r = await runNodeWith(['--import', ESM_ENTRY], fixture, { ...pageEnv(dir), SYSGENID_VMCLOCK: vmclock });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      vmclock: boolean;
      before: number;
      after: number;
      last: { trigger: string; vmclock: string; generation: number };
    };
    assert.equal(out.vmclock, true);
    assert.equal(out.before, 0);
    assert.equal(out.after, 1);
    assert.equal(out.last.trigger, 'vmclock:randomBytes');
    assert.equal(out.last.vmclock, '8589934593', 'both 32-bit halves of the counter are compared');
    assert.equal(out.last.generation, 0);
  },
);

function runNodeWith(flags: string[], script: string | undefined, env: NodeJS.ProcessEnv, cwd?: string): Promise<Run> {
  return new Promise((resolve) => {
    const args = [...flags, ...(script ? [script] : [])];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(cwd ? { cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
