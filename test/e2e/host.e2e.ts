// End-to-end, the host side (issue 16): QEMU guests with NO VM Generation ID device and a virtio-serial
// port whose host end is a chardev socket. The host command quiesces the source's HTTP example, takes
// the QEMU snapshot (its CMD) and resumes it; four clones are restored from that snapshot. Two get the
// host's restore notice (`sysgenid host --serial ... restored`, different entropy each), two get nothing
// (the negative control). Printed: the clones' table (generation, watchers re-adjusted, kernel CRNG
// reseeded, the kernel's randomness and whether it differs). See docs/e2e.md.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGuest, guestSummary } from './guest-image.js';
import { Scenario, check } from './harness.js';
import type { Vm } from './qemu.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../sysgenid.cjs');
const SNAPSHOT_CMD = path.join(here, 'host-snapshot-cmd.js');
const PORT_NAME = 'org.sysgenid.host.0';
const scenario = Scenario.setUp({
  name: 'host',
  selectedBy: ['host'],
  reportFile: 'last-host-report.txt',
  build: (work, say) => {
    const guest = buildGuest(work);
    say(`host scenario guest: ${guestSummary(guest)}`);
    return guest;
  },
});
const { say, work } = scenario;

interface Report {
  generation: number;
  watchers: number;
  tracked: number;
  outdated: number;
  lastBump: { generation: number; source: string } | null;
  list: Array<{ name: string; tracked: boolean; acked: number; outdated: boolean }>;
  backends: Array<{ name: string; live: boolean; detail: string }>;
  app: { generation: number; sessionKey: string; ackedAtMs: number | null; regeneratedAtMs: number };
  shell: Record<string, string>;
  lifecycle: {
    state: string;
    lastQuiesce: { ok: boolean } | null;
    lastUnquiesce: { ok: boolean; generationAtEnd: number } | null;
  };
  kernelRandom: string;
  forks: unknown[];
}

/** The chardev socket of a VM's host channel. */
const hostSocket = (name: string): string => path.join(work, `${name}.host`);

function boot(name: string, incoming?: string): Promise<Vm> {
  const extraArgs = [
    '-device',
    'virtio-serial-pci,id=vser0',
    '-chardev',
    `socket,id=host0,path=${hostSocket(name)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=vser0.0,chardev=host0,name=${PORT_NAME}`,
    // A second monitor for the snapshot command the host command runs.
    '-qmp',
    `unix:${path.join(work, `${name}.qmp2`)},server=on,wait=off`,
  ];
  const { qemu, kernel, initrd } = scenario.guest;
  return scenario.boot({
    name,
    qemu,
    kernel,
    initrd,
    append: 'e2e=host',
    guid: crypto.randomUUID(),
    vmgenid: false,
    extraArgs,
    memMb: 1024,
    smp: 1,
    incoming,
  });
}

/** What the guest kernel's getrandom hands out now. */
async function kernelRandom(vm: Vm): Promise<string> {
  return (await vm.ask<{ kernelRandom: string }>('random', 'RANDOM', 60_000)).kernelRandom;
}

/** `sysgenid host ...` on this host: exit code, output and how long it took. */
function host(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, 'host', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - t0 }));
  });
}

scenario.test(
  'from the host, over virtio-serial, without a VM Generation ID: lifecycle, restore notices with entropy, ' +
    'negative control',
  'host',
  async () => {
    const source = await boot('source');
    const t0 = performance.now();
    const ready = (await source.report<Report>('READY', 240_000)).value;
    const hostBackend = ready.backends.find((b) => b.name === 'host');
    say(
      `source: ready in ${((performance.now() - t0) / 1000).toFixed(1)} s, generation ${ready.generation}, ` +
        `${ready.watchers} watchers; host backend: ${hostBackend?.live ? 'live' : 'off'}: ${hostBackend?.detail}`,
    );
    const portFound = /virtio-serial: org\.sysgenid\.host\.0 \(\/dev\/vport\d+p\d+\) open/;
    check(
      source,
      hostBackend?.live === true && portFound.test(hostBackend.detail),
      'the host backend found the virtio-serial port by its name (no udev in the guest)',
    );
    check(source, ready.forks.length === 0 && ready.generation === 0, 'no VM Generation ID, generation 0');

    // The host-initiated lifecycle: quiesce (the HTTP example drains and stops accepting), the QEMU
    // snapshot as the command, resume.
    const snap = path.join(work, 'snap.mig');
    const life = await host([
      '--serial',
      hostSocket('source'),
      'snapshot',
      '--quiesce-timeout',
      '60000',
      '--timeout',
      '60000',
      '--',
      process.execPath,
      SNAPSHOT_CMD,
      path.join(work, 'source.qmp2'),
      snap,
    ]);
    check(source, life.code === 0, `sysgenid host snapshot succeeded (${life.code})\n${life.stderr}`);
    check(
      source,
      /quiesced in \d+ ms: .*http-server :8080/.test(life.stderr),
      `the HTTP example quiesced\n${life.stderr}`,
    );
    check(
      source,
      /resumed in \d+ ms: .*http-server :8080/.test(life.stderr),
      `the HTTP example resumed\n${life.stderr}`,
    );
    const snapMb = (fs.statSync(snap).size / 1e6).toFixed(0);
    say(
      `source: sysgenid host snapshot (quiesce, QEMU snapshot of ${snapMb} MB, resume) ` +
        `in ${(life.ms / 1000).toFixed(1)} s:\n#   ${life.stderr.trim().split('\n').join('\n#   ')}`,
    );
    const orig = await source.ask<Report>('report', 'REPORT', 60_000);
    check(source, orig.generation === 0 && orig.lifecycle.state === 'running', 'the original runs on at generation 0');
    await source.kill();

    const plan = [
      { name: 'host-a', notice: true },
      { name: 'host-b', notice: true },
      { name: 'ctrl-a', notice: false },
      { name: 'ctrl-b', notice: false },
    ];
    const clones = await Promise.all(plan.map((p) => boot(p.name, snap)));
    await Promise.all(clones.map((vm) => vm.waitLoaded(120_000)));
    for (const vm of clones) await vm.qmp('cont');

    const results = new Map<string, { random: string; report: Report; restored?: Awaited<ReturnType<typeof host>> }>();
    await Promise.all(
      plan.map(async (p, i) => {
        const vm = clones[i] as Vm;
        if (p.notice) {
          // Restored without a new VM Generation ID: only the host can tell it. Fresh entropy each.
          const r = await host([
            '--serial',
            hostSocket(p.name),
            'restored',
            '--timeout',
            '120000',
            '--connect-timeout',
            '30000',
          ]);
          check(
            vm,
            r.code === 0,
            `sysgenid host restored succeeded and the kernel CRNG was reseeded (${r.code})\n${r.stderr}`,
          );
          // Read right after the host command returned: what the guest kernel hands out now.
          const random = await kernelRandom(vm);
          const bumped = (await vm.report<Report>('BUMPED', 120_000)).value;
          results.set(p.name, { random, report: bumped, restored: r });
        } else {
          results.set(p.name, { random: await kernelRandom(vm), report: undefined as unknown as Report });
        }
      }),
    );
    // The negative control has had as long as the others to notice anything; now ask it.
    for (const [i, p] of plan.entries()) {
      if (p.notice) continue;
      const vm = clones[i] as Vm;
      (results.get(p.name) as { report: Report }).report = await vm.ask<Report>('report', 'REPORT', 60_000);
    }

    const table: string[] = [];
    for (const [i, p] of plan.entries()) {
      const vm = clones[i] as Vm;
      type Result = { random: string; report: Report; restored?: { stderr: string; ms: number } };
      const { random, report: r, restored } = results.get(p.name) as Result;
      const tracked = r.list.filter((w) => w.tracked);
      const adjusted = tracked.filter((w) => w.acked === r.generation && !w.outdated).length;
      if (p.notice) {
        check(
          vm,
          r.generation === 1 && r.lastBump?.source.startsWith('host: restore notice over virtio-serial') === true,
          `generation 1 from the host's notice (${r.generation}, ${r.lastBump?.source})`,
        );
        check(vm, r.forks.length === 0, 'no VM-fork record: the kernel saw no new generation ID');
        check(vm, r.outdated === 0 && adjusted === tracked.length, 'every tracked watcher re-adjusted to generation 1');
        check(
          vm,
          r.app.generation === 1 && r.app.sessionKey !== ready.app.sessionKey,
          'the app regenerated its secret',
        );
        check(
          vm,
          /kernel CRNG reseeded with 64 bytes/.test(restored?.stderr ?? ''),
          'the guest kernel CRNG was reseeded',
        );
        check(
          vm,
          /every watcher re-adjusted/.test(restored?.stderr ?? ''),
          'the host command returned only once the guest said every watcher re-adjusted (its WAIT)',
        );
        // The lifecycle: restored quiesced; re-opened only after re-adjusting (automatic un-quiesce).
        const serverLog = (await vm.ask<{ text: string }>('server-log', 'SERVER-LOG', 60_000)).text;
        const regenerated = serverLog.indexOf('generation 1: new session key');
        const reopened = serverLog.indexOf('resumed at generation 1 (a restored copy)');
        check(
          vm,
          regenerated >= 0 && reopened > regenerated,
          `the HTTP server re-opened only after regenerating its key\n${serverLog}`,
        );
      } else {
        check(
          vm,
          r.generation === 0 && r.lastBump === null && r.outdated === 0,
          `no notice: generation stays 0 (${r.generation})`,
        );
        check(vm, r.app.sessionKey === ready.app.sessionKey, "no notice: the app keeps the source's secret");
        check(vm, r.lifecycle.state === 'quiesced', `no notice: still quiesced as snapshotted (${r.lifecycle.state})`);
      }
      const bytes = /reseeded with (\d+) bytes/.exec(restored?.stderr ?? '')?.[1] ?? 'NO';
      const reseeded = p.notice ? `${bytes} bytes` : '-';
      table.push(
        `${p.name.padEnd(7)} ${(p.notice ? 'yes' : 'no').padEnd(6)} ${String(r.generation).padEnd(10)} ` +
          `${(p.notice ? `${adjusted}/${tracked.length}` : 'none told').padEnd(9)} ${reseeded.padEnd(9)} ` +
          `${random.slice(0, 24)}... ` +
          `${p.notice ? `${((restored?.ms ?? 0) / 1000).toFixed(2)} s` : '-'}`,
      );
    }
    const rnd = (n: string): string => (results.get(n) as { random: string }).random;
    const same = (a: string, b: string): string => (rnd(a) === rnd(b) ? 'THE SAME' : 'different');
    say('clones restored without a VM Generation ID (host notice over virtio-serial):');
    say('clone   notice generation watchers  reseeded  kernel randomness after (getrandom pool)   host command');
    for (const row of table) say(row);
    say(
      `kernel randomness: host-a vs host-b ${same('host-a', 'host-b')}; ` +
        `negative control ctrl-a vs ctrl-b (no notice) ${same('ctrl-a', 'ctrl-b')}; ` +
        `ctrl-a vs host-a ${same('ctrl-a', 'host-a')}`,
    );
    assert.notEqual(rnd('host-a'), rnd('host-b'), "the two notified clones' kernels hand out different bytes");
    await Promise.all(clones.map((vm) => vm.kill()));
  },
);
