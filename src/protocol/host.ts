// The host channel's wire format: what the hypervisor host sends to the daemon inside a guest over vsock
// or a virtio-serial port (src/daemon/backends/host.ts), and what `sysgenid host` sends (src/cli/).
// The same line framing and error codes as the control socket (docs/PROTOCOL.md, "The host channel"):
// one request per line, one reply line each, in order. The host-only request is RESTORED; the lifecycle
// requests are the control socket's own, answered by the daemon's control socket.

import { SysgenidError } from '../core/errors.js';
import { type Request, parseRequest, parseU32 } from './messages.js';

/** The vsock port the daemon listens on for the host (any port the host and guest agree on works). */
export const DEFAULT_HOST_VSOCK_PORT = 7744;
/** The virtio-serial port name (QEMU: -device virtserialport,name=...). */
export const DEFAULT_HOST_SERIAL_NAME = 'org.sysgenid.host.0';
/** The only peer the vsock listener keeps: VMADDR_CID_HOST. */
export const VSOCK_CID_HOST = 2;
/** Longest request line: RESTORED with the most entropy fits with room to spare. */
export const MAX_HOST_LINE = 2048;
export const MIN_ENTROPY_BYTES = 32;
export const MAX_ENTROPY_BYTES = 512;
/** The control requests the host may send; the rest of the control socket's verbs are refused. */
export const HOST_FORWARDED = ['QUIESCE', 'UNQUIESCE', 'WAIT', 'STATUS', 'PING', 'HELP'] as const;

export type HostRequest =
  | { readonly verb: 'RESTORED'; readonly min: number; readonly entropy: Buffer }
  | Extract<Request, { readonly verb: (typeof HOST_FORWARDED)[number] }>;

/** What RESTORED answers, as the JSON after OK. */
export interface RestoredReply {
  /** The generation after the notice. */
  readonly generation: number;
  /** false when the generation was already at least the notice's minimum (the restore was counted). */
  readonly bumped: boolean;
  /** Whether the kernel's CRNG was reseeded with the host's bytes (RNDADDENTROPY + RNDRESEEDCRNG). */
  readonly reseeded: boolean;
  /** Why not, when it was not. */
  readonly reseedError?: string;
  readonly entropyBytes: number;
}

const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/** Parse one host request line (without its newline). Throws SysgenidError with the reply's code. */
export function parseHostRequest(line: string): HostRequest {
  const trimmed = line.trim();
  const space = trimmed.indexOf(' ');
  const verb = (space === -1 ? trimmed : trimmed.slice(0, space)).toUpperCase();
  if (verb === 'RESTORED') {
    const args = trimmed
      .slice(space + 1)
      .trim()
      .split(/ +/);
    if (space === -1 || args.length !== 2) {
      throw new SysgenidError('EINVAL', 'RESTORED takes a minimum generation and the entropy in hex');
    }
    const min = parseU32(args[0] as string);
    if (min === undefined) throw new SysgenidError('EINVAL', 'RESTORED: the minimum generation is not a u32');
    const hex = args[1] as string;
    const bytes = hex.length / 2;
    if (!HEX.test(hex) || bytes < MIN_ENTROPY_BYTES || bytes > MAX_ENTROPY_BYTES) {
      throw new SysgenidError(
        'EINVAL',
        `RESTORED: the entropy is ${MIN_ENTROPY_BYTES} to ${MAX_ENTROPY_BYTES} bytes in hex (an even count of 0-9a-f)`,
      );
    }
    return { verb, min, entropy: Buffer.from(hex, 'hex') };
  }
  const req = parseRequest(line);
  if (!(HOST_FORWARDED as readonly string[]).includes(req.verb)) {
    throw new SysgenidError('ENOSYS', `${req.verb} is not a host request (RESTORED ${HOST_FORWARDED.join(' ')})`);
  }
  return req as HostRequest;
}

/** The RESTORED line with its newline. */
export function encodeRestored(min: number, entropy: Buffer): string {
  return `RESTORED ${min} ${entropy.toString('hex')}\n`;
}
