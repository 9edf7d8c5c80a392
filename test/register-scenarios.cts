// The guarded entry points, one scenario each, for test/register.test.ts. Run inside a child started
// with `--import sysgenid/register` (test/register-fixture-esm.ts, named imports of node:crypto) or
// `-r sysgenid/register` (test/register-fixture-cjs.cts, require('node:crypto')). Each scenario calls
// its entry point once with the page unchanged (it must not reseed), then writes a new generation into
// the page, as the daemon would, and calls it again (it must reseed, synchronously, named as the
// trigger). A line of JSON per scenario goes to stdout.

import fs = require('node:fs');
import net = require('node:net');
import type * as CryptoModule from 'node:crypto';
import type * as TlsModule from 'node:tls';
import type * as HttpsModule from 'node:https';

/** The functions as the program sees them: named ES imports or the CommonJS exports object. */
interface Mods {
  readonly randomBytes: typeof CryptoModule.randomBytes;
  readonly randomFill: typeof CryptoModule.randomFill;
  readonly randomFillSync: typeof CryptoModule.randomFillSync;
  readonly randomUUID: typeof CryptoModule.randomUUID;
  readonly randomInt: typeof CryptoModule.randomInt;
  readonly getRandomValues: typeof CryptoModule.getRandomValues;
  readonly webcrypto: typeof CryptoModule.webcrypto;
  readonly generateKey: typeof CryptoModule.generateKey;
  readonly generateKeySync: typeof CryptoModule.generateKeySync;
  readonly generateKeyPair: typeof CryptoModule.generateKeyPair;
  readonly generateKeyPairSync: typeof CryptoModule.generateKeyPairSync;
  readonly createECDH: typeof CryptoModule.createECDH;
  readonly createDiffieHellman: typeof CryptoModule.createDiffieHellman;
  readonly getDiffieHellman: typeof CryptoModule.getDiffieHellman;
  readonly tls: typeof TlsModule;
  readonly https: typeof HttpsModule;
}

interface State {
  mode: string;
  reseeds: number;
  kernelCalls: number;
  pagePath: string | null;
  last: {
    trigger: string;
    generation: number;
    mode: string;
    openssl: Array<{ ok: boolean; primaryReseedCounter: number; primaryReseedCounterBefore: number }>;
  } | null;
}

const state = (): State => {
  const all = globalThis as Record<symbol, { guard: { state(): State } } | undefined>;
  const reg = all[Symbol.for('sysgenid.register')];
  if (!reg) throw new Error('sysgenid/register is not loaded');
  return reg.guard.state();
};

const PSK = Buffer.alloc(32, 7);
type IntCallback = (e: Error | null, n: number) => void;
const TLS_OPTS = { ciphers: 'PSK-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' as const };
const cb = <T,>(fn: (done: (err: Error | null, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));

async function runScenarios(m: Mods, only?: string): Promise<void> {
  const page = state().pagePath;
  if (!page) throw new Error('no page');
  let generation = 0;
  const bumpPage = (): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(++generation, 0);
    const fd = fs.openSync(page, 'r+');
    fs.writeSync(fd, b, 0, 4, 0);
    fs.closeSync(fd);
  };
  // Made before any bump, so that their own creation is not what a later scenario measures.
  const ecdh = m.createECDH('prime256v1');
  const dh = m.createDiffieHellman(m.getDiffieHellman('modp14').getPrime());
  const server = m.tls.createServer({ ...TLS_OPTS, pskCallback: () => PSK }, (s) => s.end('x'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const httpsServer = m.https.createServer({ ...TLS_OPTS, pskCallback: () => PSK }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r));
  const httpsPort = (httpsServer.address() as net.AddressInfo).port;
  const clientOpts = {
    ...TLS_OPTS,
    host: '127.0.0.1',
    pskCallback: () => ({ psk: PSK, identity: 'test' }),
    checkServerIdentity: () => undefined,
  };

  const scenarios: Array<[string, string | RegExp, () => unknown]> = [
    ['randomBytes', 'randomBytes', () => m.randomBytes(16)],
    ['randomBytes(cb)', 'randomBytes', () => cb<Buffer>((d) => m.randomBytes(16, d))],
    // The value says whether the elements outside [offset, offset + size) were left alone.
    [
      'randomFillSync',
      'randomFillSync',
      () => {
        const a = m.randomFillSync(new Uint32Array(4), 1, 2);
        return `outside untouched: ${a[0] === 0 && a[3] === 0}`;
      },
    ],
    [
      'randomFill',
      'randomFill',
      () =>
        cb<Buffer>((d) => m.randomFill(Buffer.alloc(16), 4, 8, d)).then(
          (b) => `outside untouched: ${[...b.subarray(0, 4), ...b.subarray(12)].every((x) => x === 0)}`,
        ),
    ],
    ['randomUUID', 'randomUUID', () => m.randomUUID()],
    ['randomInt', 'randomInt', () => m.randomInt(10, 1000)],
    ['randomInt(cb)', 'randomInt', () => cb<number>((d) => m.randomInt(1000, d as IntCallback))],
    ['getRandomValues', 'getRandomValues', () => m.getRandomValues(new Uint8Array(16))],
    ['webcrypto.getRandomValues', 'getRandomValues', () => m.webcrypto.getRandomValues(new Uint16Array(8))],
    [
      'globalThis.crypto.getRandomValues',
      'getRandomValues',
      () => globalThis.crypto.getRandomValues(new Uint8Array(8)),
    ],
    ['webcrypto.randomUUID', 'webcrypto.randomUUID', () => globalThis.crypto.randomUUID()],
    ['generateKey', 'generateKey', () => cb((d) => m.generateKey('hmac', { length: 256 }, d))],
    ['generateKeySync', 'generateKeySync', () => m.generateKeySync('aes', { length: 128 })],
    ['generateKeyPair', 'generateKeyPair', () => cb((d) => m.generateKeyPair('ec', { namedCurve: 'P-256' }, d))],
    ['generateKeyPairSync', 'generateKeyPairSync', () => m.generateKeyPairSync('ed25519')],
    [
      'subtle.generateKey',
      'subtle.generateKey',
      () => m.webcrypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign']),
    ],
    ['createECDH', 'createECDH', () => m.createECDH('prime256v1').generateKeys()],
    ['ECDH.generateKeys', 'ECDH.generateKeys', () => ecdh.generateKeys()],
    ['createDiffieHellman', 'createDiffieHellman', () => m.createDiffieHellman(dh.getPrime())],
    ['DiffieHellman.generateKeys', 'DiffieHellman.generateKeys', () => dh.generateKeys()],
    [
      'tls client',
      /^tls/,
      () =>
        new Promise<void>((resolve, reject) => {
          const c = m.tls.connect({ ...clientOpts, port }, () => {
            c.exportKeyingMaterial(32, 'test', Buffer.alloc(0));
            c.end();
            resolve();
          });
          c.on('error', reject);
        }),
    ],
    // A raw TCP client (not guarded): the server's TLS socket is the first randomness user.
    [
      'tls server',
      'tls',
      () =>
        new Promise<void>((resolve) => {
          // Listeners run in order: the server's own, which made the TLS socket, has run when this one does.
          server.once('connection', () =>
            setImmediate(() => {
              raw.destroy();
              resolve();
            }),
          );
          const raw = net.connect(port, '127.0.0.1');
          raw.on('error', () => undefined);
        }),
    ],
    [
      'https client',
      /^tls/,
      () =>
        new Promise<void>((resolve, reject) => {
          m.https
            .get({ ...clientOpts, port: httpsPort, agent: false }, (res) => {
              res.resume();
              res.on('end', resolve);
            })
            .on('error', reject);
        }),
    ],
  ];
  for (const [name, trigger, call] of scenarios) {
    if (only && name !== only) continue;
    const s0 = state();
    const first = await call();
    const s1 = state();
    bumpPage();
    const k0 = s1.kernelCalls;
    const second = await call();
    const s2 = state();
    const last = s2.last;
    const triggered = last?.trigger ?? '';
    console.log(
      JSON.stringify({
        name,
        quietWithoutChange: s1.reseeds === s0.reseeds,
        reseededOnce: s2.reseeds === s1.reseeds + 1,
        trigger: triggered,
        triggerOk: typeof trigger === 'string' ? triggered === trigger : trigger.test(triggered),
        generation: last?.generation,
        expectedGeneration: generation,
        mode: s2.mode,
        opensslOk:
          (last?.openssl.length ?? 0) > 0 &&
          last?.openssl.every((c) => c.ok && c.primaryReseedCounter > c.primaryReseedCounterBefore),
        kernelCalls: s2.kernelCalls - k0,
        sameShape: typeof first === typeof second,
        value: typeof second === 'string' || typeof second === 'number' ? second : null,
      }),
    );
  }
  server.close();
  httpsServer.close();
}

export = { runScenarios };
