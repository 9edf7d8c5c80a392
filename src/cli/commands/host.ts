// sysgenid host: run on the hypervisor host, speaks to the sysgenidd of one guest over the host channel
// (its `host` backend): after a restore, the notice with fresh entropy; around a snapshot, the lifecycle.

import type { CycleReportDocument as CycleReport } from '../../protocol/cycle-report.js';
import { type HostTarget, HostLink, lifecycleDeadline } from '../../client/host-link.js';
import { DEFAULT_ADJUST_TIMEOUT_MS, DEFAULT_QUIESCE_TIMEOUT_MS, DEFAULT_UNQUIESCE_TIMEOUT_MS } from '../../defaults.js';
import { SysgenidError } from '../../core/errors.js';
import { DEFAULT_HOST_VSOCK_PORT, MAX_ENTROPY_BYTES, MIN_ENTROPY_BYTES } from '../../protocol/host.js';
import { defineCommand } from '../command.js';
import { describeReport, quiesceExit } from '../cycle-report.js';
import { EXIT, UsageError } from '../exit.js';
import { JSON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';
import { runCommand } from '../run-command.js';

/** restored: the guest moved and re-adjusted, but its kernel's CRNG was not reseeded. */
export const EXIT_NOT_RESEEDED = 9;

const SUBCOMMANDS = ['restored', 'quiesce', 'resume', 'wait', 'status', 'snapshot', 'ping'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

export default defineCommand({
  name: 'host',
  summary: 'on the hypervisor host: tell a guest it was restored (with entropy), drive its lifecycle',
  help: `Usage: sysgenid host TARGET restored [--min N] [--entropy-bytes N] [--timeout MS] [--allow-no-reseed]
       sysgenid host TARGET quiesce [--timeout MS] | resume [--timeout MS] | wait [--timeout MS]
       sysgenid host TARGET status | ping
       sysgenid host TARGET snapshot [--quiesce-timeout MS] [--timeout MS] -- CMD [ARG...]

Runs on the hypervisor host and speaks to sysgenidd in one guest, whose "host" backend is on
(e.g. sysgenidd --backends kmsg,vmclock,host). TARGET is one of:
  --firecracker PATH     Firecracker's vsock Unix socket (uds_path); with --port
  --cid N                the guest's vsock CID (QEMU vhost-vsock, cloud-hypervisor); with --port
  --serial PATH          a QEMU chardev socket bound to the guest's virtio-serial port
  --port N               the guest's vsock port (default ${DEFAULT_HOST_VSOCK_PORT})

  restored   the guest was restored or cloned: send the notice with fresh bytes from this host's RNG
             (the guest adds them to its kernel pool and reseeds its CRNG, then bumps), then wait until
             every watcher in the guest has re-adjusted. --min N: the generation the guest must reach
             (it does not bump if it already has: one bump per restore with a VM Generation ID device).
             Exit 0; 4 if watchers were still outdated at --timeout (default ${DEFAULT_ADJUST_TIMEOUT_MS});
             ${EXIT_NOT_RESEEDED} if the guest's kernel CRNG could not be reseeded (unless --allow-no-reseed).
  quiesce    quiesce the guest (as "sysgenid quiesce" in it); exit as that command
  resume     un-quiesce the guest (as "sysgenid resume")
  wait       until no tracked watcher in the guest is outdated
  status     print the guest's status document (JSON)
  snapshot   quiesce the guest, run CMD here (the hypervisor's snapshot call), resume the guest
  ping       exit 0 if the guest's daemon answers
Exit 7 if the guest cannot be reached, 1 on another failure, 2 on a usage error.

  --entropy-bytes N      bytes sent with restored (${MIN_ENTROPY_BYTES} to ${MAX_ENTROPY_BYTES}, default 64)
  --connect-timeout MS   connecting and Firecracker's handshake (default 10000)
${JSON_HELP}
  --dir DIR              not used: the guest's daemon is reached through TARGET
  -h, --help             show this help
`,
  options: {
    firecracker: { type: 'string' },
    cid: { type: 'string' },
    serial: { type: 'string' },
    port: { type: 'string' },
    min: { type: 'string' },
    'entropy-bytes': { type: 'string' },
    timeout: { type: 'string' },
    'quiesce-timeout': { type: 'string' },
    'allow-no-reseed': { type: 'boolean' },
    'connect-timeout': { type: 'string' },
    ...JSON_OPTION,
  },
  positionals: true,
  async run({ values, positionals }) {
    const [sub, ...cmd] = positionals;
    if (!SUBCOMMANDS.includes(sub as Sub)) {
      throw new UsageError(`host needs one of ${SUBCOMMANDS.join(', ')}${sub ? `, got ${JSON.stringify(sub)}` : ''}`);
    }
    if (sub !== 'snapshot' && cmd.length > 0) throw new UsageError(`host ${sub}: unexpected ${JSON.stringify(cmd[0])}`);
    const target = targetOf(values);
    const connectTimeoutMs = u32Option('connect-timeout', values['connect-timeout'], 10_000);
    const link = await HostLink.open(target, { connectTimeoutMs });
    try {
      return await runSub(sub as Sub, link, values, cmd);
    } finally {
      link.close();
    }
  },
});

type Values = Record<string, string | boolean | undefined>;

function targetOf(values: Values): HostTarget {
  const given = (['firecracker', 'cid', 'serial'] as const).filter((k) => values[k] !== undefined);
  if (given.length !== 1) throw new UsageError('host needs exactly one of --firecracker PATH, --cid N, --serial PATH');
  const port = u32Option('port', values.port as string | undefined, DEFAULT_HOST_VSOCK_PORT);
  if (values.port !== undefined && values.serial !== undefined) {
    throw new UsageError('--port goes with --firecracker or --cid');
  }
  if (values.firecracker !== undefined) return { kind: 'firecracker', path: values.firecracker as string, port };
  if (values.serial !== undefined) return { kind: 'serial', path: values.serial as string };
  return { kind: 'vsock', cid: u32Option('cid', values.cid as string, 0), port };
}

async function runSub(sub: Sub, link: HostLink, values: Values, cmd: string[]): Promise<number> {
  const timeout = (fallback: number): number => u32Option('timeout', values.timeout as string | undefined, fallback);
  const json = values.json === true;
  switch (sub) {
    case 'ping':
      await link.request('PING', 10_000);
      if (json) printJson({ ok: true });
      else process.stdout.write('OK\n');
      return EXIT.OK;
    case 'status':
      // Already one JSON document.
      process.stdout.write(`${await link.request('STATUS', 10_000)}\n`);
      return EXIT.OK;
    case 'wait':
      await link.wait(timeout(DEFAULT_ADJUST_TIMEOUT_MS));
      if (json) printJson({ ok: true });
      return EXIT.OK;
    case 'restored':
      return restored(link, values, timeout(DEFAULT_ADJUST_TIMEOUT_MS));
    case 'quiesce': {
      const ms = timeout(DEFAULT_QUIESCE_TIMEOUT_MS);
      const report = cycle(await link.request(`QUIESCE ${ms}`, lifecycleDeadline(ms)));
      process.stderr.write(`sysgenid host quiesce: ${describeReport(report)}\n`);
      if (json) printJson(report);
      return quiesceExit(report);
    }
    case 'resume': {
      const ms = timeout(DEFAULT_UNQUIESCE_TIMEOUT_MS);
      const report = cycle(await link.request(`UNQUIESCE ${ms}`, lifecycleDeadline(ms)));
      process.stderr.write(`sysgenid host resume: ${describeReport(report)}\n`);
      if (json) printJson(report);
      return report.ok ? EXIT.OK : EXIT.FAILURE;
    }
    case 'snapshot':
      return snapshot(link, values, cmd, timeout(DEFAULT_ADJUST_TIMEOUT_MS));
  }
}

async function restored(link: HostLink, values: Values, timeoutMs: number): Promise<number> {
  const min = u32Option('min', values.min as string | undefined, 0);
  const bytes = u32Option('entropy-bytes', values['entropy-bytes'] as string | undefined, 64);
  if (bytes < MIN_ENTROPY_BYTES || bytes > MAX_ENTROPY_BYTES) {
    throw new UsageError(`--entropy-bytes is ${MIN_ENTROPY_BYTES} to ${MAX_ENTROPY_BYTES}, got ${bytes}`);
  }
  const t0 = performance.now();
  const r = await link.restored(min, bytes);
  process.stderr.write(
    `sysgenid host restored: generation ${r.generation}` +
      `${r.bumped ? '' : ` (already at least ${min}: no bump)`}; kernel CRNG ` +
      `${r.reseeded ? `reseeded with ${r.entropyBytes} bytes` : `NOT reseeded: ${r.reseedError ?? 'unknown'}`}\n`,
  );
  await link.wait(timeoutMs);
  process.stderr.write(
    `sysgenid host restored: every watcher re-adjusted ` +
      `(${(performance.now() - t0).toFixed(0)} ms after the notice was sent)\n`,
  );
  if (values.json === true) printJson({ ...r, readjustedMs: Math.round(performance.now() - t0) });
  else process.stdout.write(`${r.generation}\n`);
  if (!r.reseeded && values['allow-no-reseed'] !== true) return EXIT_NOT_RESEEDED;
  return EXIT.OK;
}

async function snapshot(link: HostLink, values: Values, cmd: string[], resumeMs: number): Promise<number> {
  if (cmd.length === 0) {
    throw new UsageError('host snapshot needs the command that takes the snapshot: -- CMD [ARG...]');
  }
  const quiesceMs = u32Option(
    'quiesce-timeout',
    values['quiesce-timeout'] as string | undefined,
    DEFAULT_QUIESCE_TIMEOUT_MS,
  );
  const report = cycle(await link.request(`QUIESCE ${quiesceMs}`, lifecycleDeadline(quiesceMs)));
  if (!report.ok) {
    process.stderr.write(`sysgenid host snapshot: quiesce failed, ${cmd[0]} not run: ${report.reason}\n`);
    if (values.json === true) printJson({ quiesce: report, command: null, resume: null });
    return quiesceExit(report);
  }
  process.stderr.write(`sysgenid host snapshot: ${describeReport(report)}; running ${cmd.join(' ')}\n`);
  const code = await runCommand(cmd, report.generationAtStart, 'host snapshot');
  const resumed = cycle(await link.request(`UNQUIESCE ${resumeMs}`, lifecycleDeadline(resumeMs)));
  process.stderr.write(`sysgenid host snapshot: ${describeReport(resumed)}\n`);
  if (values.json === true) printJson({ quiesce: report, command: { exitCode: code }, resume: resumed });
  if (code !== 0) {
    process.stderr.write(`sysgenid host snapshot: ${cmd[0]} exited with ${code}\n`);
    return EXIT.FAILURE;
  }
  return resumed.ok ? EXIT.OK : EXIT.FAILURE;
}

function cycle(json: string): CycleReport {
  try {
    return JSON.parse(json) as CycleReport;
  } catch {
    throw new SysgenidError('EPROTO', "the guest's lifecycle report is not JSON");
  }
}
