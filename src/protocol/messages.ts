// The wire format, both directions. Text lines so that a person can drive the daemon with socat and
// any language can speak it; docs/PROTOCOL.md is the normative description of everything here.

import { isU32 } from '../core/generation.js';
import {
  DEFAULT_PRIORITY,
  DEFAULT_QUIESCE_TIMEOUT_MS,
  DEFAULT_UNQUIESCE_TIMEOUT_MS,
  MAX_PRIORITY,
  MAX_TIMEOUT_MS,
  MIN_PRIORITY,
} from '../defaults.js';
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
  | { readonly verb: 'SUBSCRIBE'; readonly priority: number }
  | { readonly verb: 'UNSUBSCRIBE' }
  | { readonly verb: 'QUIESCED'; readonly cycle: number }
  | { readonly verb: 'UNQUIESCED'; readonly cycle: number }
  | { readonly verb: 'FAILED'; readonly cycle: number; readonly message: string }
  | { readonly verb: 'PROBLEM'; readonly message: string }
  | { readonly verb: 'QUIESCE'; readonly timeoutMs: number }
  | { readonly verb: 'UNQUIESCE'; readonly timeoutMs: number }
  /** Control socket: take one watcher (by connection id) or every watcher of a uid out of the lifecycle and waits. */
  | { readonly verb: 'EXCLUDE'; readonly target: { readonly id: number } | { readonly uid: number } }
  /** Control socket: close one connection by its id. */
  | { readonly verb: 'DISCONNECT'; readonly id: number }
  | { readonly verb: 'PING' }
  | { readonly verb: 'HELP' }
  | { readonly verb: 'QUIT' };

/**
 * Every request verb, in the order HELP lists them: the one list. `satisfies` rejects a verb that is not
 * a Request; the daemon's handler table is keyed by Verb and indexed by Request['verb'], so a Request
 * missing here does not compile either.
 */
export const VERBS = [
  'NAME',
  'PID',
  'READ',
  'ACK',
  'TRACK',
  'WAIT',
  'RESUME',
  'OBSERVE',
  'STATUS',
  'BUMP',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'QUIESCED',
  'UNQUIESCED',
  'FAILED',
  'PROBLEM',
  'QUIESCE',
  'UNQUIESCE',
  'EXCLUDE',
  'DISCONNECT',
  'PING',
  'HELP',
  'QUIT',
] as const satisfies readonly Request['verb'][];

export type Verb = (typeof VERBS)[number];

/** Longest failure or problem text a subscriber may report. */
export const MAX_MESSAGE = 200;
/** Default budgets of QUIESCE and UNQUIESCE when the request names none (defined with the other defaults). */
export { DEFAULT_QUIESCE_TIMEOUT_MS, DEFAULT_UNQUIESCE_TIMEOUT_MS };

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
  if (n === undefined)
    throw new SysgenidError('EINVAL', `${verb}: ${what} must be a decimal u32, got ${JSON.stringify(arg)}`);
  return n;
}

export { MAX_TIMEOUT_MS };

function timeoutArg(verb: string, arg: string): number {
  const n = u32Arg(verb, arg, 'a timeout in milliseconds');
  if (n > MAX_TIMEOUT_MS) {
    throw new SysgenidError('EINVAL', `${verb}: a timeout is at most ${MAX_TIMEOUT_MS} ms, got ${n}`);
  }
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
      if (mode !== undefined && mode !== 'NONBLOCK')
        throw new SysgenidError('EINVAL', 'READ takes nothing or NONBLOCK');
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
      const timeoutMs = args[0] === undefined ? 0 : timeoutArg(verb, args[0]);
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
    case 'SUBSCRIBE': {
      let priority = DEFAULT_PRIORITY;
      if (args[0] !== undefined) {
        if (!/^-?[0-9]{1,4}$/.test(args[0])) {
          const range = `from ${MIN_PRIORITY} to ${MAX_PRIORITY}`;
          throw new SysgenidError(
            'EINVAL',
            `SUBSCRIBE: priority must be an integer ${range}, got ${JSON.stringify(args[0])}`,
          );
        }
        priority = Number(args[0]);
        if (priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
          throw new SysgenidError('EINVAL', `SUBSCRIBE: priority must be from ${MIN_PRIORITY} to ${MAX_PRIORITY}`);
        }
      }
      noMore(verb, args.slice(1));
      return { verb, priority };
    }
    case 'QUIESCED':
    case 'UNQUIESCED': {
      const cycle = u32Arg(verb, args[0], 'a cycle number');
      noMore(verb, args.slice(1));
      return { verb, cycle };
    }
    case 'FAILED': {
      const cycle = u32Arg(verb, args[0], 'a cycle number');
      const message = tail.slice((args[0] as string).length).trim();
      // Required (docs/PROTOCOL.md): the message is what the quiesce's report and its caller see.
      if (message === '') throw new SysgenidError('EINVAL', 'FAILED: needs a message saying what failed');
      if (message.length > MAX_MESSAGE)
        throw new SysgenidError('EINVAL', `FAILED: at most ${MAX_MESSAGE} characters of message`);
      return { verb, cycle, message };
    }
    case 'PROBLEM': {
      if (tail.length > MAX_MESSAGE) throw new SysgenidError('EINVAL', `PROBLEM: at most ${MAX_MESSAGE} characters`);
      return { verb, message: tail };
    }
    case 'QUIESCE':
    case 'UNQUIESCE': {
      const timeoutMs =
        args[0] === undefined
          ? verb === 'QUIESCE'
            ? DEFAULT_QUIESCE_TIMEOUT_MS
            : DEFAULT_UNQUIESCE_TIMEOUT_MS
          : timeoutArg(verb, args[0]);
      if (timeoutMs === 0)
        throw new SysgenidError(
          'EINVAL',
          `${verb}: the timeout must be above 0: a machine is never left waiting forever`,
        );
      noMore(verb, args.slice(1));
      return { verb, timeoutMs };
    }
    case 'EXCLUDE': {
      if (args[0]?.toUpperCase() === 'UID') {
        const uid = u32Arg(verb, args[1], 'a uid after UID');
        noMore(verb, args.slice(2));
        return { verb, target: { uid } };
      }
      const id = u32Arg(verb, args[0], 'a connection id (or UID <uid>)');
      noMore(verb, args.slice(1));
      return { verb, target: { id } };
    }
    case 'DISCONNECT': {
      const id = u32Arg(verb, args[0], 'a connection id');
      noMore(verb, args.slice(1));
      return { verb, id };
    }
    case 'UNSUBSCRIBE':
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
    case 'NAME':
      return `NAME ${req.name}\n`;
    case 'PID':
      return `PID ${req.pid}\n`;
    case 'READ':
      return req.nonblock ? 'READ NONBLOCK\n' : 'READ\n';
    case 'ACK':
      return `ACK ${req.generation}\n`;
    case 'RESUME':
      return `RESUME ${req.generation}\n`;
    case 'TRACK':
      return req.on ? 'TRACK ON\n' : 'TRACK OFF\n';
    case 'WAIT':
      return `WAIT ${req.timeoutMs}\n`;
    case 'STATUS':
      return req.brief ? 'STATUS BRIEF\n' : 'STATUS\n';
    case 'BUMP':
      return `BUMP ${req.min}\n`;
    case 'SUBSCRIBE':
      return `SUBSCRIBE ${req.priority}\n`;
    case 'QUIESCED':
      return `QUIESCED ${req.cycle}\n`;
    case 'UNQUIESCED':
      return `UNQUIESCED ${req.cycle}\n`;
    case 'FAILED':
      return `FAILED ${req.cycle} ${sanitizeMessage(req.message)}\n`;
    case 'PROBLEM':
      return req.message ? `PROBLEM ${sanitizeMessage(req.message)}\n` : 'PROBLEM\n';
    case 'QUIESCE':
      return `QUIESCE ${req.timeoutMs}\n`;
    case 'UNQUIESCE':
      return `UNQUIESCE ${req.timeoutMs}\n`;
    case 'EXCLUDE':
      return 'uid' in req.target ? `EXCLUDE UID ${req.target.uid}\n` : `EXCLUDE ${req.target.id}\n`;
    case 'DISCONNECT':
      return `DISCONNECT ${req.id}\n`;
    default:
      return `${req.verb}\n`;
  }
}

/** A name as a watcher may send it: printable ASCII, trimmed, at most MAX_NAME characters. */
export function sanitizeName(name: string): string {
  return name
    .replace(/[^\x20-\x7e]/g, '?')
    .trim()
    .slice(0, MAX_NAME);
}

/** A message as FAILED and PROBLEM carry it: one line of printable ASCII, at most MAX_MESSAGE characters. */
export function sanitizeMessage(text: string): string {
  return text
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, MAX_MESSAGE);
}

// Server to client.

export type ServerLine =
  | { readonly type: 'hello'; readonly version: number; readonly generation: number; readonly id: number }
  | { readonly type: 'gen'; readonly generation: number }
  /** A lifecycle request to a subscriber: quiesce, or un-quiesce (with the generation now). */
  | { readonly type: 'quiesce'; readonly cycle: number }
  | { readonly type: 'unquiesce'; readonly cycle: number; readonly generation: number }
  | { readonly type: 'ok'; readonly value: string }
  | { readonly type: 'err'; readonly code: ErrorCode; readonly message: string };

export const encodeHello = (generation: number, id: number): string => `HELLO ${PROTOCOL_NAME} ${generation} ${id}\n`;
export const encodeGen = (generation: number): string => `GEN ${generation}\n`;
export const encodeQuiesce = (cycle: number): string => `QUIESCE ${cycle}\n`;
export const encodeUnquiesce = (cycle: number, generation: number): string => `UNQUIESCE ${cycle} ${generation}\n`;
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
    case 'QUIESCE': {
      const cycle = parseU32(rest);
      if (cycle !== undefined) return { type: 'quiesce', cycle };
      break;
    }
    case 'UNQUIESCE': {
      const [c, g] = rest.split(' ');
      const cycle = parseU32(c ?? '');
      const generation = parseU32(g ?? '');
      if (cycle !== undefined && generation !== undefined) return { type: 'unquiesce', cycle, generation };
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
