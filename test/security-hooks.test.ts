// Attack tests, hooks (issue 12, points 3 and 16): a local user cannot get code run as root through the
// hooks directory, hooks that daemonize do not outlive their run, and bumps cannot pile hooks up.
// Each assertion here fails on the code before the fix (the swap ran the attacker's script as root,
// symlinks were followed, daemonized hooks survived, every bump started its own hooks at once).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, it } from 'node:test';
import { status } from '../src/client/index.js';
import { addon } from '../src/native/addon.js';
import { bump, eventually, sleep, startDaemon } from './helpers.js';
import { AS_NOBODY, NOBODY, alive, isRoot, sharedTmp } from './security-helpers.js';

/** A shared temporary directory with an empty hooks.d and an out/ where the hooks leave their marks. */
function hookDirs(t: TestContext): { base: string; hooks: string; out: string } {
  const base = sharedTmp(t);
  const hooks = path.join(base, 'hooks.d');
  fs.mkdirSync(hooks);
  const out = path.join(base, 'out');
  fs.mkdirSync(out);
  return { base, hooks, out };
}

function script(file: string, body: string, mode = 0o755): void {
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`);
  fs.chmodSync(file, mode);
}

it(
  'a hooks directory another user can write runs nothing, however fast they swap links in it',
  { skip: !isRoot && 'needs root' },
  async (t) => {
    const { base, hooks, out } = hookDirs(t);
    fs.chmodSync(hooks, 0o777);
    fs.chmodSync(out, 0o777);
    const benign = path.join(base, 'benign.sh');
    script(benign, `touch ${out}/benign.$SYSGENID`);
    // The attacker's script: proof that it ran, and as whom.
    const evil = path.join(base, 'evil.sh');
    script(evil, `id -u > ${out}/pwned.$SYSGENID`);
    fs.chownSync(evil, NOBODY, NOBODY);
    // A root-owned hook in the writable directory: run before the fix, since only the file was checked.
    script(path.join(hooks, '10-root-owned'), `touch ${out}/root-owned.$SYSGENID`);
    fs.symlinkSync(benign, path.join(hooks, '20-swap'));
    const swapper = spawn(
      AS_NOBODY[0] as string,
      [
        ...AS_NOBODY.slice(1),
        'sh',
        '-c',
        `cd ${hooks}; while :; do ln -sfn ${benign} .x && mv -Tf .x 20-swap; ` +
          `ln -sfn ${evil} .y && mv -Tf .y 20-swap; done`,
      ],
      { stdio: 'ignore' },
    );
    t.after(() => swapper.kill('SIGKILL'));

    const d = await startDaemon(t, { args: ['--hooks-dir', hooks, '--hook-timeout', '2000'] });
    for (let i = 0; i < 30; i++) {
      await bump(d.dir);
      await sleep(20);
    }
    await sleep(1000);
    swapper.kill('SIGKILL');
    const ran = fs.readdirSync(out);
    const pwned = ran.filter((f) => f.startsWith('pwned'));
    t.diagnostic(`the attacker's script ran as root after ${pwned.length} of 30 bumps`);
    assert.deepEqual(pwned, [], "the attacker's script never ran");
    await d.waitForLog(/hooks: running none from .*hooks\.d: .*writable by group or others/);
    assert.deepEqual(ran, [], 'nothing in a directory others can write runs');
    assert.equal(d.log().match(/running none from/g)?.length, 1, 'the refusal is logged once, not at every bump');
  },
);

it(
  'a symlinked hook is refused with a log line, even to a root-owned program; a script still runs by descriptor',
  { skip: !isRoot && 'needs root' },
  async (t) => {
    const { base, hooks, out } = hookDirs(t);
    const target = path.join(base, 'root-program.sh');
    script(target, `touch ${out}/link-ran`);
    fs.symlinkSync(target, path.join(hooks, '10-link'));
    script(path.join(hooks, '20-script'), `echo "$0" > ${out}/argv0.$SYSGENID`);
    const d = await startDaemon(t, { args: ['--hooks-dir', hooks] });
    await bump(d.dir);
    await eventually(() => fs.existsSync(path.join(out, 'argv0.1')), 5000, 'the script hook ran');
    await d.waitForLog(/hooks: skipping .*10-link: a symbolic link/);
    assert.ok(!fs.existsSync(path.join(out, 'link-ran')));
    // Executed as the daemon's own descriptor of the file it checked, not by name.
    assert.match(fs.readFileSync(path.join(out, 'argv0.1'), 'utf8'), new RegExp(`^/proc/${d.child.pid}/fd/[0-9]+\\n$`));
  },
);

it(
  'a hook that daemonizes (double fork + setsid) does not outlive its run',
  { skip: !isRoot && 'needs root' },
  async (t) => {
    const { hooks, out } = hookDirs(t);
    // Keeps its environment: found by its SYSGENID_HOOK token, with or without the addon.
    script(
      path.join(hooks, '10-daemonize'),
      // The hook waits for the pid file, so that it does not end (and its descendants get killed) first.
      `setsid sh -c 'echo $$ > ${out}/kept.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &\n` +
        `while [ ! -s ${out}/kept.pid ]; do sleep 0.05; done\nexit 0`,
    );
    // Clears its environment: only the subreaper (addon) finds it.
    script(
      path.join(hooks, '20-daemonize-clean'),
      `env -i setsid sh -c 'echo $$ > ${out}/clean.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &\n` +
        `while [ ! -s ${out}/clean.pid ]; do sleep 0.05; done\nexit 0`,
    );
    const d = await startDaemon(t, { args: ['--hooks-dir', hooks, '--hook-timeout', '5000'] });
    const pids: number[] = [];
    t.after(() => {
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });
    await bump(d.dir);
    const pidIn = (name: string): Promise<number> =>
      eventually(
        () => {
          const file = path.join(out, name);
          return fs.existsSync(file) && Number(fs.readFileSync(file, 'utf8').trim());
        },
        5000,
        name,
      ) as Promise<number>;
    const kept = await pidIn('kept.pid');
    const clean = await pidIn('clean.pid');
    pids.push(kept, clean);
    await eventually(() => !alive(kept), 5000, `the daemonized hook descendant ${kept} killed`);
    const subreaper = (await status({ dir: d.dir })).hooks.subreaper;
    if (addon() && process.env.SYSGENID_NO_ADDON !== '1') {
      assert.equal(subreaper, true, 'STATUS says the daemon is a subreaper');
      await eventually(() => !alive(clean), 5000, `the environment-less descendant ${clean} killed (subreaper)`);
      const stat = (): string => {
        const file = `/proc/${clean}/stat`;
        return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      };
      await eventually(() => stat() === '', 5000, 'and reaped, not left a zombie');
    } else {
      assert.equal(subreaper, false, 'STATUS says the daemon is not a subreaper');
      t.diagnostic(
        'without the addon a descendant that clears its environment escapes ' +
          `(pid ${clean} alive: ${alive(clean)}); documented`,
      );
    }
    await d.waitForLog(/killed \d+ process\(es\) it left running/);
  },
);

it(
  'bumps beyond the cap are coalesced: at most one run waits, and it reports the latest generation',
  { skip: !isRoot && 'needs root' },
  async (t) => {
    const { hooks, out } = hookDirs(t);
    script(path.join(hooks, '10-slow'), `echo "$SYSGENID_PREVIOUS" > ${out}/run.$SYSGENID; sleep 1`);
    const d = await startDaemon(t, { args: ['--hooks-dir', hooks, '--hook-timeout', '5000'] });
    for (let i = 0; i < 40; i++) await bump(d.dir);
    await eventually(
      () => fs.existsSync(path.join(out, 'run.40')),
      10_000,
      'a coalesced run for the latest generation',
    );
    await sleep(300);
    const runs = fs
      .readdirSync(out)
      .map((f) => Number(f.slice(4)))
      .sort((x, y) => x - y);
    t.diagnostic(`40 bumps started ${runs.length} runs: ${runs.join(' ')}`);
    assert.ok(runs.length <= 3, `40 bumps started ${runs.length} runs: ${runs.join(' ')}`);
    assert.equal(runs[0], 1, 'the first bump runs at once');
    // Each run's SYSGENID_PREVIOUS is the generation the run before it reported: no change goes unreported.
    for (let i = 1; i < runs.length; i++) {
      assert.equal(fs.readFileSync(path.join(out, `run.${runs[i]}`), 'utf8').trim(), String(runs[i - 1]));
    }
  },
);
