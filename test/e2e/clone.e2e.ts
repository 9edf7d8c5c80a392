// End-to-end: a real Linux guest (Debian's 6.12 cloud kernel, QEMU's vmgenid device) runs sysgenidd
// and its watchers; it is snapshotted while running and restored three times at once, two clones with
// new VM generation IDs and one with the original. Then a process tree inside a guest is dumped by CRIU
// and restored twice. What each copy did is read from what its guest prints on its serial console.
// See docs/e2e.md. Run with `npm run test:e2e`.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { buildGuest, guestSummary } from './guest-image.js';
import { Scenario, check } from './harness.js';
import type { Vm } from './qemu.js';

const scenario = Scenario.setUp({
  name: 'clone',
  selectedBy: ['vm', 'criu'],
  reportFile: 'last-report.txt',
  build: (work, say) => {
    const guest = buildGuest(work);
    say(`guest: ${guestSummary(guest)}`);
    return guest;
  },
});
const { say } = scenario;

interface AppState {
  generation: number;
  pid: number;
  outerPid: number;
  sessionKey: string;
  uuid: string;
  uuidv7: string[];
  nodeRandomUUID: string;
  regeneratedAtMs: number;
  ackedAtMs: number | null;
}

interface Report {
  generation: number;
  watchers: number;
  tracked: number;
  outdated: number;
  lastBump: { generation: number; source: string; pageWrittenMonoMs: number } | null;
  list: Array<{ name: string; tracked: boolean; acked: number; outdated: boolean }>;
  untrackedSees: number;
  app: AppState;
  shell: Record<string, string>;
  probe: { mapped: boolean; seen: Array<{ generation: number; atMs: number }> };
  forks: Array<{ kernelMs: number; monoMs: number; facility: number }>;
  http: HttpProbe;
  lifecycle: { state: string; ready: boolean };
  monoMs: number;
}

interface HttpProbe {
  answers: number;
  refused: number;
  runs: Array<{ keyId: string; generation: number; instance: string; count: number }>;
}

interface SnapshotNow extends Report {
  httpRefused: boolean;
}

interface SnapshotResult extends Report {
  exitCode: number | null;
  snapshotLog: string;
  serverLog: string;
}

/** Answers the guest's HTTP client got carrying this key. */
const answersWith = (h: HttpProbe, keyId: string): number =>
  h.runs.filter((r) => r.keyId === keyId).reduce((n, r) => n + r.count, 0);

interface Bumped extends Report {
  observed: number;
  seenAtMs: number;
  ackedAtMs: number | null;
  waitError: string | null;
  cliWait: { status: number; stderr: string };
  nodeCrypto: NodeCrypto & { noAddon: Record<string, string>; noAddonProblem: string | null; noAddonLog: string[] };
}

/** Node's own crypto in an unmodified program, run with `sysgenid/register` and without it (issue 13). */
interface NodeCrypto {
  flag: Record<string, string>;
  plain: Record<string, string>;
}

const CRYPTO_ROWS = [
  'randomBytes',
  'getRandomValues',
  'randomInt',
  'randomUUID',
  'generateKeyPairSync',
  'ecdhGenerateKeys',
  'tlsExportKeyingMaterial',
];
const short = (v: string | undefined): string =>
  v === undefined ? 'missing' : v.length > 20 ? `${v.slice(0, 12)}...` : v;

/**
 * The proof of issue 13: in two copies of one image, every value the flagged program drew differs,
 * and every value the same program drew without the flag is identical (so the test can fail).
 */
function assertNodeCrypto(vm: Vm, label: string, x: NodeCrypto, y: NodeCrypto): void {
  for (const row of CRYPTO_ROWS) {
    say(
      `${label}: ${row.padEnd(24)} with the flag ${short(x.flag[row])} | ${short(y.flag[row])}; ` +
        `without ${short(x.plain[row])} | ${short(y.plain[row])}`,
    );
  }
  for (const row of CRYPTO_ROWS) {
    check(
      vm,
      typeof x.flag[row] === 'string' && typeof y.flag[row] === 'string' && x.flag[row] !== y.flag[row],
      `${label}: with --import sysgenid/register, ${row} differs between the two copies ` +
        `(${x.flag[row]} vs ${y.flag[row]})`,
    );
    check(
      vm,
      typeof x.plain[row] === 'string' && x.plain[row] === y.plain[row],
      `${label}: without the flag, ${row} is the same in both copies: the negative control ` +
        `(${x.plain[row]} vs ${y.plain[row]})`,
    );
  }
}

function boot(name: string, guid: string, append: string, memMb: number, smp: number, incoming?: string): Promise<Vm> {
  const { qemu, kernel, initrd } = scenario.guest;
  return scenario.boot({ name, qemu, kernel, initrd, append, guid, memMb, smp, incoming });
}

scenario.test(
  'a running VM snapshotted and restored as three clones: new IDs re-adjust, the same ID does not',
  'vm',
  async () => {
    const sourceGuid = crypto.randomUUID();
    const source = await boot('source', sourceGuid, 'e2e=vm', 1024, 1);
    const bootStart = performance.now();
    const ready = (await source.report<Report>('READY', 240_000)).value;
    check(
      source,
      ready.list.some((w) => w.name === 'http-server :8080'),
      'the HTTP example subscribed to the lifecycle',
    );
    say(
      `source: booted and ready in ${((performance.now() - bootStart) / 1000).toFixed(1)} s; generation ` +
        `${ready.generation}, ${ready.watchers} watchers (${ready.tracked} tracked), backends ` +
        JSON.stringify(
          (ready as unknown as { backends: Array<{ name: string; live: boolean }> }).backends.map(
            (b) => `${b.name}:${b.live ? 'live' : 'off'}`,
          ),
        ),
    );
    check(
      source,
      ready.generation === 0 && ready.outdated === 0,
      'the source starts at generation 0 with nobody outdated',
    );
    check(source, ready.forks.length === 0, 'a fresh boot has no VM-fork record');
    check(source, ready.probe.mapped, 'the probe maps the page (the addon is in the guest)');

    // The lifecycle: `sysgenid snapshot` in the guest quiesces (the HTTP example drains and stops
    // accepting), then its command asks the host for the snapshot.
    const q0 = performance.now();
    source.type('snapshot');
    const now = (await source.report<SnapshotNow>('SNAPSHOT-NOW', 120_000)).value;
    check(
      source,
      now.lifecycle.state === 'quiesced' && now.httpRefused,
      `quiesced, and the HTTP server not accepting, when the snapshot is taken (${now.lifecycle.state}, refused ` +
        `${now.httpRefused})`,
    );
    const sourceKey = now.http.runs.at(-1)?.keyId as string;
    const sourceKeyAnswers = answersWith(now.http, sourceKey);
    check(
      source,
      typeof sourceKey === 'string' && sourceKeyAnswers > 0,
      'the HTTP server answered with its key before the snapshot',
    );
    say(
      `source: quiesced for the snapshot in ${((performance.now() - q0) / 1000).toFixed(1)} s (sysgenid ` +
        `snapshot in the guest); HTTP key ${sourceKey}, ${now.http.answers} answers so far`,
    );

    const snap = await scenario.snapshot(source, 'snap.mig');
    // The original goes on: the snapshot is done, it resumes with its own identity.
    await source.qmp('cont');
    source.type('snapshot-done');
    const orig = (await source.report<SnapshotResult>('SNAPSHOT-RESULT', 120_000)).value;
    check(
      source,
      orig.exitCode === 0 && /this is the original/.test(orig.snapshotLog),
      `the original's sysgenid snapshot resumed it as the original\n${orig.snapshotLog}`,
    );
    check(
      source,
      orig.lifecycle.state === 'running' &&
        orig.http.runs.at(-1)?.keyId === sourceKey &&
        orig.http.answers > now.http.answers,
      'the original serves again, with its own key',
    );
    say(
      `source: resumed as the original, serving key ${sourceKey} again (${orig.http.answers - now.http.answers} ` +
        `more answers)`,
    );
    await source.kill();

    const plan = [
      { name: 'clone-a', guid: crypto.randomUUID(), fresh: true },
      { name: 'clone-b', guid: crypto.randomUUID(), fresh: true },
      { name: 'clone-same', guid: sourceGuid, fresh: false },
    ];
    const clones = await Promise.all(plan.map((p) => boot(p.name, p.guid, 'e2e=vm', 1024, 1, snap)));
    await Promise.all(clones.map((vm) => vm.waitLoaded(120_000)));
    const contAt = new Map<Vm, number>();
    for (const vm of clones) {
      await vm.qmp('cont');
      contAt.set(vm, performance.now());
      // The restore orchestrator's answer to the command that asked for the snapshot.
      vm.type('snapshot-done');
    }

    const results = new Map<string, Bumped | Report>();
    await Promise.all(
      clones.map(async (vm, i) => {
        if (!plan[i]?.fresh) return;
        const { value, at } = await vm.report<Bumped>('BUMPED', 180_000);
        results.set(vm.name, value);
        say(
          `${vm.name}: resumed; bump seen by the host ${((at - (contAt.get(vm) ?? at)) / 1000).toFixed(2)} s ` +
            `after cont`,
        );
      }),
    );
    // The negative control has had as long as the others to notice anything; now ask it.
    const same = clones[2] as Vm;
    results.set(same.name, await same.ask<Report>('report', 'REPORT', 60_000));

    const secrets = new Set<string>([ready.app.sessionKey]);
    for (const [i, p] of plan.entries()) {
      const vm = clones[i] as Vm;
      const r = results.get(p.name) as Bumped;
      if (p.fresh) {
        const fork = r.forks.at(-1);
        check(
          vm,
          r.forks.length === 1 && fork?.facility === 0,
          'exactly one VM-fork record, from the kernel (facility 0)',
        );
        check(vm, r.generation === 1 && r.observed === 1, `moved to generation 1 (is ${r.generation})`);
        check(
          vm,
          r.lastBump?.source.startsWith('kmsg') === true,
          `the bump came from the kernel log backend, not a forced update (${r.lastBump?.source})`,
        );
        check(
          vm,
          r.outdated === 0 && r.list.filter((w) => w.tracked).every((w) => w.acked === 1),
          'every tracked watcher acknowledged generation 1',
        );
        check(
          vm,
          r.waitError === null && r.cliWait.status === 0,
          `sysgenid wait returned success (${r.waitError ?? ''} ${r.cliWait.stderr})`,
        );
        check(
          vm,
          r.list.some((w) => w.name === 'untracked' && !w.tracked && w.acked === 0) && r.untrackedSees === 1,
          'the untracked watcher was told but not waited for',
        );
        check(
          vm,
          r.app.generation === 1 && r.app.ackedAtMs !== null && r.app.regeneratedAtMs <= r.app.ackedAtMs,
          'the app regenerated its secrets before acknowledging',
        );
        check(vm, typeof r.shell['1'] === 'string', 'the shell watcher ran its command for generation 1');
        const page = r.probe.seen.find((s) => s.generation === 1);
        check(vm, page !== undefined, 'the mapped-page reader saw generation 1');
        check(
          vm,
          !secrets.has(r.app.sessionKey) &&
            !ready.app.uuidv7.some((u) => r.app.uuidv7.includes(u)) &&
            r.app.uuid !== ready.app.uuid,
          "the secrets are new: not the source's, not the other clone's",
        );
        secrets.add(r.app.sessionKey);
        const recordToPage = (page?.atMs ?? NaN) - (fork?.monoMs ?? NaN);
        const recordToAcked = (r.ackedAtMs ?? NaN) - (fork?.monoMs ?? NaN);
        const recordToWrite = (r.lastBump?.pageWrittenMonoMs ?? NaN) - (fork?.monoMs ?? NaN);
        say(
          `${p.name}: after the kernel's VM-fork record (guest monotonic clock): page written ` +
            `${recordToWrite.toFixed(1)} ms, seen by the mapped reader ${recordToPage.toFixed(1)} ms, every ` +
            `watcher acknowledged ${recordToAcked.toFixed(1)} ms`,
        );
        say(
          `${p.name}: session key ${r.app.sessionKey.slice(0, 16)}..., uuid ${r.app.uuid}, uuidv7 ${r.app.uuidv7[0]}`,
        );
        const w = (
          await vm.report<{
            generation: number;
            requestedAtMs: number;
            pageWrittenMonoMs: number;
            probeSeenMs: number | null;
            ackedAtMs: number;
          }>('WARM', 60_000)
        ).value;
        check(vm, w.generation === 2, 'a forced bump after the clone moved it to 2');
        say(
          `${p.name}: then, warm, a forced bump: page written ` +
            `${(w.pageWrittenMonoMs - w.requestedAtMs).toFixed(1)} ms after the request, seen by the mapped ` +
            `reader ${((w.probeSeenMs ?? NaN) - w.requestedAtMs).toFixed(1)} ms, every watcher acknowledged ` +
            `${(w.ackedAtMs - w.requestedAtMs).toFixed(1)} ms`,
        );
      } else {
        const rep = r as Report;
        check(vm, rep.forks.length === 0, 'no VM-fork record with the same generation ID');
        check(
          vm,
          rep.generation === 0 && rep.outdated === 0 && rep.lastBump === null,
          `did not bump (generation ${rep.generation})`,
        );
        check(vm, rep.app.sessionKey === ready.app.sessionKey && rep.app.generation === 0, 'kept its secret');
        check(vm, Object.keys(rep.shell).length === 0 && rep.probe.seen.length === 1, 'no watcher was told anything');
        say(
          `${p.name}: same generation ID: no kernel record, generation 0, secret kept ` +
            `(${rep.app.sessionKey.slice(0, 16)}...)`,
        );
      }
    }
    // The lifecycle in each copy: the server re-opened only after its key was regenerated, and no answer
    // carried the source's key; the same-ID clone is the original's twin and resumes as such.
    for (const [i, p] of plan.entries()) {
      const vm = clones[i] as Vm;
      const r = (await vm.report<SnapshotResult>('SNAPSHOT-RESULT', 120_000)).value;
      check(vm, r.exitCode === 0, `sysgenid snapshot succeeded in the copy\n${r.snapshotLog}`);
      check(vm, r.lifecycle.state === 'running', `running again (${r.lifecycle.state})`);
      check(vm, r.http.answers > now.http.answers, 'the HTTP server answers again');
      const last = r.http.runs.at(-1);
      if (p.fresh) {
        check(
          vm,
          /this is a restored copy|already resumed by the daemon after the restore/.test(r.snapshotLog),
          `sysgenid snapshot knew it was a restored copy\n${r.snapshotLog}`,
        );
        const regenerated = r.serverLog.indexOf('generation 1: new session key');
        const reopened = r.serverLog.indexOf('resumed at generation 1 (a restored copy)');
        check(
          vm,
          regenerated >= 0 && reopened > regenerated,
          `the server re-opened only after regenerating its key\n${r.serverLog}`,
        );
        check(
          vm,
          answersWith(r.http, sourceKey) === sourceKeyAnswers,
          `no answer in the copy carried the source's key (${answersWith(r.http, sourceKey) - sourceKeyAnswers} did)`,
        );
        check(vm, last !== undefined && last.keyId !== sourceKey, 'it serves a new key');
        secrets.add(`http:${last?.keyId}`);
        say(
          `${p.name}: HTTP server re-opened after regenerating its key: ${last?.keyId}; ` +
            `${r.http.answers - now.http.answers} answers in the copy, none with the source's key`,
        );
      } else {
        check(
          vm,
          /this is the original/.test(r.snapshotLog) && last?.keyId === sourceKey,
          "the same-ID clone resumed as the original, with the source's key",
        );
        say(`${p.name}: resumed as the original (no new ID), serving the source's key ${sourceKey}`);
      }
    }
    check(clones[0] as Vm, secrets.size === 5, 'the two copies serve two different HTTP keys');

    const a = results.get('clone-a') as Bumped;
    const b = results.get('clone-b') as Bumped;
    assert.notEqual(a.app.sessionKey, b.app.sessionKey);
    assert.notEqual(a.app.uuid, b.app.uuid);
    assert.notEqual(a.shell['1'], b.shell['1']);
    assertNodeCrypto(clones[0] as Vm, 'node crypto in clones a | b', a.nodeCrypto, b.nodeCrypto);
    // The flag without the addon: the JavaScript calls answer from the kernel and differ; OpenSSL itself was
    // not reseeded, so what only OpenSSL draws is still the same in both clones, as the process reported.
    const JS_ROWS = ['randomBytes', 'getRandomValues', 'randomInt', 'randomUUID'];
    for (const row of CRYPTO_ROWS) {
      const same = a.nodeCrypto.noAddon[row] === b.nodeCrypto.noAddon[row];
      say(
        `node crypto, flag without the addon: ${row.padEnd(24)} ${short(a.nodeCrypto.noAddon[row])} | ` +
          `${short(b.nodeCrypto.noAddon[row])} (${same ? 'same' : 'different'})`,
      );
      const js = JS_ROWS.includes(row);
      const expected = js ? 'different (the kernel RNG)' : 'the same (OpenSSL not reseeded, as reported)';
      check(clones[0] as Vm, js ? !same : same, `without the addon, ${row} is ${expected} in both clones`);
    }
    for (const r of [a, b]) {
      const { noAddonProblem, noAddonLog } = r.nodeCrypto;
      check(
        clones[0] as Vm,
        /^OpenSSL not reseeded/.test(noAddonProblem ?? '') && noAddonLog.some((l) => /cannot reseed OpenSSL/.test(l)),
        `without the addon the process said so: status problem ${noAddonProblem}, log ${JSON.stringify(noAddonLog)}`,
      );
    }
    say(`node crypto, flag without the addon: status shows "${a.nodeCrypto.noAddonProblem}"`);
    // Not asserted (it is Node's behaviour, not ours): what crypto.randomUUID(), which caches entropy, did.
    say(
      `Node's own crypto.randomUUID() after the clone: ` +
        `${a.app.nodeRandomUUID === b.app.nodeRandomUUID ? `THE SAME in both clones (${a.app.nodeRandomUUID})` : 'different in the two clones'}; SafeRandom's: different`,
    );
    await Promise.all(clones.map((vm) => vm.kill()));
  },
);

interface CriuReport {
  modules: string[];
  dumpMs: number;
  source: AppState[];
  dumpActions: string[];
  copies: Array<{
    name: string;
    restoreMs: number;
    waitMs: number;
    wait: { status: number; out: string };
    generation: number;
    outdated: number;
    lastBump: { source: string } | null;
    restoreActions: string[];
    lifecycle: {
      state: string;
      lastQuiesce: { ok: boolean; steps: unknown[]; generationAtStart: number } | null;
      lastUnquiesce: { ok: boolean; steps: unknown[]; generationAtEnd: number } | null;
    };
  }>;
  apps: Array<AppState & { quiescedAtMs?: number; resumed?: { restored: boolean } | null }>;
  live: Array<{ name: string; generation: number; outdated: number; watchers: number; lifecycle: string }>;
  crypto: Array<{ copy: string } & NodeCrypto>;
}

scenario.test(
  'a process tree dumped by CRIU and restored twice side by side: both copies bump and re-adjust',
  'criu',
  async () => {
    const vm = await boot('criu', crypto.randomUUID(), 'e2e=criu', 2048, 2);
    const t0 = performance.now();
    const { value: r } = await vm.report<CriuReport>('(?:CRIU|ERROR)', 300_000);
    if (!('copies' in r)) assert.fail(`criu scenario failed in the guest: ${JSON.stringify(r)}\n${vm.tail(120)}`);
    say(
      `criu: guest ready and scenario done in ${((performance.now() - t0) / 1000).toFixed(1)} s; dump ` +
        `${r.dumpMs.toFixed(0)} ms`,
    );
    check(vm, r.source.length === 1 && r.source[0]?.generation === 0, 'one source app at generation 0');
    const src = r.source[0] as CriuReport['apps'][number];
    check(
      vm,
      typeof src.quiescedAtMs === 'number' && src.resumed === null,
      'the tree was quiesced by the action script at pre-dump, and dumped so',
    );
    for (const c of r.copies) {
      check(
        vm,
        c.generation === 1 && c.lastBump?.source.startsWith('forced') === true,
        `copy ${c.name} bumped to 1 by the action script's request (${c.generation}, ${c.lastBump?.source})`,
      );
      check(vm, c.wait.status === 0 && c.outdated === 0, `copy ${c.name}: sysgenid wait succeeded`);
      check(
        vm,
        c.lifecycle.state === 'running' &&
          c.lifecycle.lastQuiesce?.generationAtStart === 0 &&
          c.lifecycle.lastUnquiesce?.ok === true &&
          c.lifecycle.lastUnquiesce.generationAtEnd === 1,
        `copy ${c.name}: restored quiesced, resumed at generation 1 (${JSON.stringify(c.lifecycle)})`,
      );
      say(
        `criu copy ${c.name}: restore ${c.restoreMs.toFixed(0)} ms (action script included), then sysgenid wait ` +
          `returned in ${c.waitMs.toFixed(0)} ms; ${c.restoreActions.join(' ')}`,
      );
    }
    const copies = r.apps.filter((a) => a.outerPid !== src.outerPid);
    check(
      vm,
      copies.length === 2 && copies.every((a) => a.generation === 1 && a.ackedAtMs !== null),
      'both restored apps regenerated and acknowledged generation 1',
    );
    check(
      vm,
      copies.every((a) => a.resumed?.restored === true),
      'both restored apps were resumed, as restored copies, after re-adjusting',
    );
    const [x, y] = copies as [AppState, AppState];
    check(vm, x.pid === src.pid && y.pid === src.pid, 'the copies are restored copies (same pid in their namespace)');
    check(
      vm,
      x.sessionKey !== y.sessionKey && x.sessionKey !== src.sessionKey && y.sessionKey !== src.sessionKey,
      "the copies end with different secrets, neither the source's",
    );
    check(
      vm,
      r.live.every((l) => l.generation === 1 && l.outdated === 0 && l.lifecycle === 'running'),
      'both copies still run side by side, at generation 1, nobody outdated',
    );
    say(`criu: dump with the action script: ${r.dumpActions.join(' | ')}`);
    say(
      `criu: source key ${src.sessionKey.slice(0, 16)}..., copies ${x.sessionKey.slice(0, 16)}... and ` +
        `${y.sessionKey.slice(0, 16)}...`,
    );
    check(vm, r.crypto.length === 2, `both copies answered with Node's own crypto (${r.crypto.length})`);
    assertNodeCrypto(vm, 'node crypto in criu copies A | B', r.crypto[0] as NodeCrypto, r.crypto[1] as NodeCrypto);
    say(
      `criu: Node's own crypto.randomUUID() in the copies: ` +
        `${x.nodeRandomUUID === y.nodeRandomUUID ? `THE SAME (${x.nodeRandomUUID})` : 'different'}; ` +
        `SafeRandom's: different`,
    );
  },
);
