// The wire format, both directions. Text lines so that a person can drive the daemon with socat and
// any language can speak it; docs/PROTOCOL.md is the normative description of everything here.

import { isU32 } from '../core/generation.js';
import { type ErrorCode, SysgenidError, isErrorCode } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const PROTOCOL_NAME = `sysgenid/${PROTOCOL_VERSION}`;

/** Longest request line the daemon accepts, newline excluded. */
export const MAX_REQUEST_LINE = 512;
/** Longest name a watcher may give itself. */
export const MAX_NAME = 64;

export type Request =
  | { readonly verb: 'NAME'; readonly name: string }
  | { readonly verb: 'PID'; readonly pid: number }
  | { readonly verb: 'READ'; readonly nonblock: boolean }
  | { readonly verb: 'ACK'; readonly generation: number }
  | { readonly verb: 'TRACK'; readonly on: boolean }
  | { readonly verb: 'WAIT'; readonly timeoutMs: number }
  | { readonly verb: 'RESUME'; readonly generation: number }
  | { readonly verb: 'OBSERVE' }
  | { readonly verb: 'STATUS'; readonly brief: boolean }
  | { readonly verb: 'BUMP'; readonly min: number }
  | { readonly verb: 'PING' }
  | { readonly verb: 'HELP' }
  | { readonly verb: 'QUIT' };

export type Verb = Request['verb'];

export const VERBS: readonly Verb[] = [
  'NAME', 'PID', 'READ', 'ACK', 'TRACK', 'WAIT', 'RESUME', 'OBSERVE', 'STATUS', 'BUMP', 'PING', 'HELP', 'QUIT',
];

const PRINTABLE = /^[\x20-\x7e]*$/;
const DECIMAL = /^[0-9]{1,10}$/;

/** A u32 written as the protocol writes numbers (unsigned decimal, no sign, no hex), or undefined. */
export function parseU32(text: string): number | undefined {
  const n = DECIMAL.test(text) ? Number(text) : NaN;
  return isU32(n) ? n : undefined;
}

function u32Arg(verb: string, arg: string | undefined, what: string): number {
  if (arg === undefined) throw new SysgenidError('EINVAL', `${verb} needs ${what}`);
  const n = parseU32(arg);
  if (n === undefined) throw new SysgenidError('EINVAL', `${verb}: ${what} must be a decimal u32, got ${JSON.stringify(arg)}`);
  return n;
}

function noMore(verb: string, rest: string[]): void {
  if (rest.length > 0) throw new SysgenidError('EINVAL', `${verb}: unexpected argument ${JSON.stringify(rest[0])}`);
}

/** Parse one request line (without its newline). Throws SysgenidError with the reply's code. */
export function parseRequest(line: string): Request {
  if (!PRINTABLE.test(line)) throw new SysgenidError('EPROTO', 'request is not a line of printable ASCII');
  const trimmed = line.trim();
  if (trimmed === '') throw new SysgenidError('EINVAL', 'empty request');
  const space = trimmed.indexOf(' ');
  const verb = (space === -1 ? trimmed : trimmed.slice(0, space)).toUpperCase();
  const tail = space === -1 ? '' : trimmed.slice(space + 1).trim();
  const args = tail === '' ? [] : tail.split(/ +/);
  switch (verb) {
    case 'NAME': {
      if (tail === '') throw new SysgenidError('EINVAL', 'NAME needs a name');
      if (tail.length > MAX_NAME) throw new SysgenidError('EINVAL', `NAME: at most ${MAX_NAME} characters`);
      return { verb, name: tail };
    }
    case 'PID': {
      const pid = u32Arg(verb, args[0], 'a process id');
      noMore(verb, args.slice(1));
      return { verb, pid };
    }
    case 'READ': {
      const mode = args[0]?.toUpperCase();
      if (mode !== undefined && mode !== 'NONBLOCK') throw new SysgenidError('EINVAL', 'READ takes nothing or NONBLOCK');
      noMore(verb, args.slice(1));
      return { verb, nonblock: mode === 'NONBLOCK' };
    }
    case 'ACK':
    case 'RESUME': {
      const generation = u32Arg(verb, args[0], 'a generation');
      noMore(verb, args.slice(1));
      return { verb, generation };
    }
    case 'TRACK': {
      const mode = args[0]?.toUpperCase();
      if (mode !== 'ON' && mode !== 'OFF') throw new SysgenidError('EINVAL', 'TRACK takes ON or OFF');
      noMore(verb, args.slice(1));
      return { verb, on: mode === 'ON' };
    }
    case 'WAIT': {
      const timeoutMs = args[0] === undefined ? 0 : u32Arg(verb, args[0], 'a timeout in milliseconds');
      noMore(verb, args.slice(1));
      return { verb, timeoutMs };
    }
    case 'STATUS': {
      const mode = args[0]?.toUpperCase();
      if (mode !== undefined && mode !== 'BRIEF') throw new SysgenidError('EINVAL', 'STATUS takes nothing or BRIEF');
      noMore(verb, args.slice(1));
      return { verb, brief: mode === 'BRIEF' };
    }
    case 'BUMP': {
      const min = args[0] === undefined ? 0 : u32Arg(verb, args[0], 'a minimum generation');
      noMore(verb, args.slice(1));
      return { verb, min };
    }
    case 'OBSERVE':
    case 'PING':
    case 'HELP':
    case 'QUIT':
      noMore(verb, args);
      return { verb };
    default:
      throw new SysgenidError('ENOSYS', `unknown request ${JSON.stringify(verb.slice(0, 32))}; send HELP for the list`);
  }
}

/** Encode a request for the wire (the client side). */
export function encodeRequest(req: Request): string {
  switch (req.verb) {
    case 'NAME': return `NAME ${req.name}\n`;
    case 'PID': return `PID ${req.pid}\n`;
    case 'READ': return req.nonblock ? 'READ NONBLOCK\n' : 'READ\n';
    case 'ACK': return `ACK ${req.generation}\n`;
    case 'RESUME': return `RESUME ${req.generation}\n`;
    case 'TRACK': return req.on ? 'TRACK ON\n' : 'TRACK OFF\n';
    case 'WAIT': return `WAIT ${req.timeoutMs}\n`;
    case 'STATUS': return req.brief ? 'STATUS BRIEF\n' : 'STATUS\n';
    case 'BUMP': return `BUMP ${req.min}\n`;
    default: return `${req.verb}\n`;
  }
}

/** A name as a watcher may send it: printable ASCII, trimmed, at most MAX_NAME characters. */
export function sanitizeName(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '?').trim().slice(0, MAX_NAME);
}

// Server to client.

export type ServerLine =
  | { readonly type: 'hello'; readonly version: number; readonly generation: number; readonly id: number }
  | { readonly type: 'gen'; readonly generation: number }
  | { readonly type: 'ok'; readonly value: string }
  | { readonly type: 'err'; readonly code: ErrorCode; readonly message: string };

export const encodeHello = (generation: number, id: number): string => `HELLO ${PROTOCOL_NAME} ${generation} ${id}\n`;
export const encodeGen = (generation: number): string => `GEN ${generation}\n`;
export const encodeOk = (value?: string | number): string => (value === undefined ? 'OK\n' : `OK ${value}\n`);
export const encodeErr = (code: ErrorCode, message: string): string =>
  `ERR ${code} ${message.replace(/[\r\n]/g, ' ')}\n`;

export function parseServerLine(line: string): ServerLine {
  const space = line.indexOf(' ');
  const head = space === -1 ? line : line.slice(0, space);
  const rest = space === -1 ? '' : line.slice(space + 1);
  switch (head) {
    case 'OK':
      return { type: 'ok', value: rest };
    case 'GEN': {
      const generation = parseU32(rest);
      if (generation !== undefined) return { type: 'gen', generation };
      break;
    }
    case 'ERR': {
      const sp = rest.indexOf(' ');
      const code = sp === -1 ? rest : rest.slice(0, sp);
      const message = sp === -1 ? '' : rest.slice(sp + 1);
      return { type: 'err', code: isErrorCode(code) ? code : 'EPROTO', message: message || code };
    }
    case 'HELLO': {
      const [proto, gen, id] = rest.split(' ');
      const m = /^sysgenid\/([0-9]+)$/.exec(proto ?? '');
      const generation = parseU32(gen ?? '');
      const idn = Number(id);
      if (m && generation !== undefined && Number.isSafeInteger(idn)) {
        return { type: 'hello', version: Number(m[1]), generation, id: idn };
      }
      break;
    }
  }
  throw new SysgenidError('EPROTO', `unexpected line from the daemon: ${JSON.stringify(line.slice(0, 80))}`);
}
