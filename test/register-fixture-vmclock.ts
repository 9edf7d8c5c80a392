// Started with `--import sysgenid/register` and SYSGENID_VMCLOCK pointing at a file laid out like the
// vmclock page (test/register.test.ts): the hypervisor's vm_generation_counter moves, the daemon's page
// does not (yet), and the next crypto call reseeds.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { registerState } from '../src/client/register.js';

const file = process.env.SYSGENID_VMCLOCK as string;
crypto.randomBytes(8);
const before = registerState();
const fd = fs.openSync(file, 'r+');
const counter = Buffer.alloc(8);
counter.writeBigUInt64LE(BigInt(process.argv[2] ?? '8589934593'));
fs.writeSync(fd, counter, 0, 8, 0x68);
fs.closeSync(fd);
crypto.randomBytes(8);
const after = registerState();
console.log(
  JSON.stringify({
    vmclock: before?.vmclock,
    before: before?.reseeds,
    after: after?.reseeds,
    last: after?.last,
  }),
);
