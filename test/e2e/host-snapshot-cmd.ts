// The hypervisor's snapshot call in the host-side lifecycle test: run by `sysgenid host snapshot -- ...`
// on the host while the guest is quiesced. Over a QMP socket of its own: stop, write the whole machine to
// a file (a migration stream, what the clones start from), and continue. Usage: QMP_SOCKET FILE.

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const [qmpPath, file] = process.argv.slice(2) as [string, string];
const sock = net.createConnection(qmpPath);
let buf = '';
const waiters: Array<(msg: Record<string, unknown>) => void> = [];
sock.on('data', (d: Buffer) => {
  buf += d.toString();
  let nl: number;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (!line) continue;
    const msg = JSON.parse(line) as Record<string, unknown>;
    if ('event' in msg) continue;
    waiters.shift()?.(msg);
  }
});
const next = (): Promise<Record<string, unknown>> => new Promise((r) => waiters.push(r));
async function qmp(execute: string, args?: Record<string, unknown>): Promise<unknown> {
  const reply = next();
  sock.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
  const msg = await reply;
  if ('error' in msg) throw new Error(`QMP ${execute}: ${JSON.stringify(msg.error)}`);
  return msg.return;
}

await next();
await qmp('qmp_capabilities');
const t0 = performance.now();
await qmp('stop');
await qmp('migrate', { uri: `exec:cat > ${file}` });
for (;;) {
  const st = (await qmp('query-migrate')) as { status?: string; 'error-desc'?: string };
  if (st.status === 'completed') break;
  if (st.status === 'failed' || st.status === 'cancelled') {
    throw new Error(`migration ${st.status}: ${st['error-desc'] ?? ''}`);
  }
  await sleep(50);
}
await qmp('cont');
const took = ((performance.now() - t0) / 1000).toFixed(1);
process.stderr.write(`host-snapshot: ${file} written in ${took} s; guest continued\n`);
sock.destroy();
