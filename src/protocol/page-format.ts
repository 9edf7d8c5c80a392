// The page's only field: the counter as a u32 in the machine's native byte order at offset 0, the
// layout AWS-LC reads.

import os from 'node:os';

const LITTLE = os.endianness() === 'LE';

export function encodeU32(n: number, buf: Buffer = Buffer.alloc(4)): Buffer {
  if (LITTLE) buf.writeUInt32LE(n, 0);
  else buf.writeUInt32BE(n, 0);
  return buf;
}

export function decodeU32(buf: Buffer): number {
  return LITTLE ? buf.readUInt32LE(0) : buf.readUInt32BE(0);
}
