// The wire format: request parsing, encoding, and framing under any split of the byte stream.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineSplitter } from '../src/protocol/framing.js';
import {
  MAX_REQUEST_LINE,
  VERBS,
  encodeErr,
  encodeGen,
  encodeHello,
  encodeOk,
  encodeRequest,
  parseRequest,
  parseServerLine,
  type Request,
  encodeQuiesce,
  encodeUnquiesce,
} from '../src/protocol/messages.js';
import { SysgenidError } from '../src/protocol/errors.js';

function errorCode(line: string): string {
  try {
    parseRequest(line);
  } catch (err) {
    assert.ok(err instanceof SysgenidError);
    return err.code;
  }
  return 'parsed';
}

describe('parseRequest', () => {
  const good: Array<[string, Request]> = [
    ['NAME my app', { verb: 'NAME', name: 'my app' }],
    ['PID 42', { verb: 'PID', pid: 42 }],
    ['READ', { verb: 'READ', nonblock: false }],
    ['read nonblock', { verb: 'READ', nonblock: true }],
    ['ACK 0', { verb: 'ACK', generation: 0 }],
    ['ACK 4294967295', { verb: 'ACK', generation: 4294967295 }],
    ['TRACK off', { verb: 'TRACK', on: false }],
    ['TRACK ON', { verb: 'TRACK', on: true }],
    ['WAIT', { verb: 'WAIT', timeoutMs: 0 }],
    ['WAIT 250', { verb: 'WAIT', timeoutMs: 250 }],
    ['RESUME 9', { verb: 'RESUME', generation: 9 }],
    ['OBSERVE', { verb: 'OBSERVE' }],
    ['STATUS', { verb: 'STATUS', brief: false }],
    ['STATUS BRIEF', { verb: 'STATUS', brief: true }],
    ['BUMP', { verb: 'BUMP', min: 0 }],
    ['BUMP 8', { verb: 'BUMP', min: 8 }],
    ['SUBSCRIBE', { verb: 'SUBSCRIBE', priority: 0 }],
    ['SUBSCRIBE -20', { verb: 'SUBSCRIBE', priority: -20 }],
    ['UNSUBSCRIBE', { verb: 'UNSUBSCRIBE' }],
    ['QUIESCED 4', { verb: 'QUIESCED', cycle: 4 }],
    ['UNQUIESCED 4', { verb: 'UNQUIESCED', cycle: 4 }],
    ['FAILED 4 cannot  drain the pool', { verb: 'FAILED', cycle: 4, message: 'cannot  drain the pool' }],
    ['PROBLEM key rotation failed', { verb: 'PROBLEM', message: 'key rotation failed' }],
    ['PROBLEM', { verb: 'PROBLEM', message: '' }],
    ['QUIESCE', { verb: 'QUIESCE', timeoutMs: 10000 }],
    ['QUIESCE 2500', { verb: 'QUIESCE', timeoutMs: 2500 }],
    ['UNQUIESCE 30000', { verb: 'UNQUIESCE', timeoutMs: 30000 }],
    ['EXCLUDE 12', { verb: 'EXCLUDE', target: { id: 12 } }],
    ['exclude uid 65534', { verb: 'EXCLUDE', target: { uid: 65534 } }],
    ['DISCONNECT 12', { verb: 'DISCONNECT', id: 12 }],
    ['PING', { verb: 'PING' }],
    ['HELP', { verb: 'HELP' }],
    ['QUIT', { verb: 'QUIT' }],
    ['  ACK   3  ', { verb: 'ACK', generation: 3 }],
  ];
  for (const [line, req] of good) {
    it(`parses ${JSON.stringify(line)}`, () => assert.deepEqual(parseRequest(line), req));
  }

  it('round-trips every request through encodeRequest', () => {
    for (const [, req] of good) {
      // FAILED's message is sent with its runs of spaces folded.
      const expect = req.verb === 'FAILED' ? { ...req, message: req.message.replace(/ +/g, ' ') } : req;
      assert.deepEqual(parseRequest(encodeRequest(req).trimEnd()), expect);
    }
    assert.deepEqual(new Set(good.map(([, r]) => r.verb)), new Set(VERBS));
  });

  const bad: Array<[string, string]> = [
    ['', 'EINVAL'],
    ['   ', 'EINVAL'],
    ['FROB', 'ENOSYS'],
    ['ACK', 'EINVAL'],
    ['ACK -1', 'EINVAL'],
    ['ACK 4294967296', 'EINVAL'],
    ['ACK 99999999999', 'EINVAL'],
    ['ACK 0x10', 'EINVAL'],
    ['ACK 1.5', 'EINVAL'],
    ['ACK 1 2', 'EINVAL'],
    ['TRACK maybe', 'EINVAL'],
    ['TRACK', 'EINVAL'],
    ['READ now', 'EINVAL'],
    ['WAIT soon', 'EINVAL'],
    ['BUMP -3', 'EINVAL'],
    ['STATUS ALL', 'EINVAL'],
    ['PING pong', 'EINVAL'],
    ['SUBSCRIBE 1001', 'EINVAL'],
    ['SUBSCRIBE high', 'EINVAL'],
    ['SUBSCRIBE 1 2', 'EINVAL'],
    ['QUIESCED', 'EINVAL'],
    ['UNQUIESCED x', 'EINVAL'],
    ['FAILED', 'EINVAL'],
    [`FAILED 1 ${'x'.repeat(201)}`, 'EINVAL'],
    [`PROBLEM ${'x'.repeat(201)}`, 'EINVAL'],
    ['QUIESCE 0', 'EINVAL'],
    ['QUIESCE soon', 'EINVAL'],
    ['UNQUIESCE 5 6', 'EINVAL'],
    ['EXCLUDE', 'EINVAL'],
    ['EXCLUDE -1', 'EINVAL'],
    ['EXCLUDE UID', 'EINVAL'],
    ['EXCLUDE UID x', 'EINVAL'],
    ['EXCLUDE 1 2', 'EINVAL'],
    ['DISCONNECT', 'EINVAL'],
    ['DISCONNECT 1 2', 'EINVAL'],
    ['NAME', 'EINVAL'],
    [`NAME ${'x'.repeat(65)}`, 'EINVAL'],
    ['ACK \u0000', 'EPROTO'],
    ['\u00ff\u00fe', 'EPROTO'],
    ['ACK\t1', 'EPROTO'],
  ];
  for (const [line, code] of bad) {
    it(`rejects ${JSON.stringify(line.slice(0, 20))} with ${code}`, () => assert.equal(errorCode(line), code));
  }
});

describe('server lines', () => {
  it('encodes and parses every kind', () => {
    assert.deepEqual(parseServerLine(encodeHello(5, 12).trimEnd()), {
      type: 'hello',
      version: 1,
      generation: 5,
      id: 12,
    });
    assert.deepEqual(parseServerLine(encodeGen(7).trimEnd()), { type: 'gen', generation: 7 });
    assert.deepEqual(parseServerLine(encodeOk().trimEnd()), { type: 'ok', value: '' });
    assert.deepEqual(parseServerLine(encodeOk(3).trimEnd()), { type: 'ok', value: '3' });
    assert.deepEqual(parseServerLine(encodeErr('ETIME', 'late\nwatchers').trimEnd()), {
      type: 'err',
      code: 'ETIME',
      message: 'late watchers',
    });
    assert.equal(parseServerLine('ERR EFUTURE what').type, 'err');
    assert.deepEqual(parseServerLine(encodeQuiesce(3).trimEnd()), { type: 'quiesce', cycle: 3 });
    assert.deepEqual(parseServerLine(encodeUnquiesce(4, 9).trimEnd()), { type: 'unquiesce', cycle: 4, generation: 9 });
    assert.throws(() => parseServerLine('QUIESCE'), SysgenidError);
    assert.throws(() => parseServerLine('UNQUIESCE 4'), SysgenidError);
    assert.throws(() => parseServerLine('GEN x'), SysgenidError);
    assert.throws(() => parseServerLine('HELLO other/1 1 1'), SysgenidError);
    assert.throws(() => parseServerLine('BANANA'), SysgenidError);
  });
});

describe('LineSplitter', () => {
  function collect(max = 16): { s: LineSplitter; out: string[] } {
    const out: string[] = [];
    const s = new LineSplitter(max, { line: (l) => out.push(l), overflow: () => out.push('<overflow>') });
    return { s, out };
  }

  it('gives the same lines whatever the split', () => {
    const input = Buffer.from('ACK 1\r\nREAD\n\nSTATUS BRIEF\nPING\n');
    const expected = ['ACK 1', 'READ', '', 'STATUS BRIEF', 'PING'];
    for (let size = 1; size <= input.length; size++) {
      const { s, out } = collect(64);
      for (let i = 0; i < input.length; i += size) s.push(input.subarray(i, i + size));
      assert.deepEqual(out, expected, `chunks of ${size}`);
      assert.equal(s.buffered, 0);
    }
  });

  it('reports an oversized line once, skips it, and carries on', () => {
    for (const size of [1, 3, 7, 100]) {
      const { s, out } = collect(8);
      const input = Buffer.from('OK\nAAAAAAAAAAAAAAAAAAAAAAAAA\nNEXT\n');
      for (let i = 0; i < input.length; i += size) s.push(input.subarray(i, i + size));
      assert.deepEqual(out, ['OK', '<overflow>', 'NEXT'], `chunks of ${size}`);
    }
  });

  it('never buffers more than the limit', () => {
    const { s } = collect(MAX_REQUEST_LINE);
    s.push(Buffer.alloc(10 * MAX_REQUEST_LINE, 0x41));
    assert.ok(s.buffered <= MAX_REQUEST_LINE);
  });
});
