// An unmodified Node program (it never imports sysgenid): it uses Node's own crypto, once at start (so
// that OpenSSL's DRBGs, randomUUID's batch and randomInt's cache hold state when the guest is
// snapshotted or the tree dumped), and again on every SIGUSR2, writing what it got to
// `${CRYPTO_OUT}-<outer pid>-<n>.json`. The agent runs it twice: with `--import sysgenid/register` (or
// `-r` in the CRIU tree) and without, the negative control. Two copies restored from one image must
// print different values with the flag and identical ones without it (test/e2e/clone.e2e.ts).

import crypto from 'node:crypto';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';

const out = process.env.CRYPTO_OUT ?? '/run/e2e/crypto';
const PSK = Buffer.alloc(32, 7);
// TLS 1.2 with a pre-shared key: no certificate needed, and the keys depend only on the two hellos'
// randoms, so the exported keying material shows whether either side's randomness was duplicated.
const TLS = { ciphers: 'PSK-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' as const, minVersion: 'TLSv1.2' as const };
// Where this copy runs, as the outer pid namespace sees it: a CRIU copy keeps its own pid but not this.
const outerPid = (): number => Number(fs.readlinkSync('/proc/self'));
let runs = 0;

async function handshake(): Promise<string> {
  const server = tls.createServer({ ...TLS, pskCallback: () => PSK }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<string>((resolve, reject) => {
      const c = tls.connect(
        {
          ...TLS,
          port: (server.address() as AddressInfo).port,
          host: '127.0.0.1',
          pskCallback: () => ({ psk: PSK, identity: 'e2e' }),
          checkServerIdentity: () => undefined,
        },
        () => {
          const ekm = c.exportKeyingMaterial(32, 'EXPORTER-sysgenid-e2e', Buffer.alloc(0)).toString('hex');
          c.end();
          resolve(ekm);
        },
      );
      c.on('error', reject);
    });
  } finally {
    server.close();
  }
}

// The order is fixed: two copies without the flag make the same calls and so get the same values.
async function values(): Promise<Record<string, string>> {
  return {
    randomBytes: crypto.randomBytes(16).toString('hex'),
    getRandomValues: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex'),
    randomInt: String(crypto.randomInt(1e12)),
    randomUUID: crypto.randomUUID(),
    generateKeyPairSync: crypto
      .generateKeyPairSync('ed25519')
      .publicKey.export({ format: 'der', type: 'spki' })
      .toString('hex')
      .slice(-64),
    ecdhGenerateKeys: crypto.createECDH('prime256v1').generateKeys('hex').slice(2, 66),
    tlsExportKeyingMaterial: await handshake(),
  };
}

function publish(file: string, v: unknown): void {
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(v));
  fs.renameSync(`${file}.tmp`, file);
}

publish(`${out}-start.json`, { pid: process.pid, outerPid: outerPid(), values: await values() });
process.on('SIGUSR2', () => {
  const n = ++runs;
  void values().then((v) => {
    publish(`${out}-${outerPid()}-${n}.json`, { pid: process.pid, outerPid: outerPid(), run: n, values: v });
  });
});
setInterval(() => undefined, 1 << 30);
