// The package installs with its native addon on a machine without a C toolchain: `npm pack`, then
// `npm i -g` of the tarball into a fresh prefix with no compiler on PATH; the installed daemon then
// runs with the prebuilt addon, and says so in its status. Runs once, in the pass with the addon.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { ROOT, RawClient, eventually, tmpDir } from './helpers.js';
import { packTarball, pathWithoutCompiler } from './package-helpers.js';
import { runtimePaths } from '../src/protocol/runtime-dir.js';

const forced = process.env.SYSGENID_NO_ADDON === '1';
const builtHere = fs.existsSync(path.join(ROOT, 'build/Release/sysgenid.node'));

it(
  'npm i -g of the packed tarball without a compiler gives a daemon with the prebuilt addon',
  {
    skip:
      (forced && 'the install is tested once, in the pass with the addon') ||
      (!builtHere && 'no addon was built here to ship'),
  },
  async (t) => {
    const work = tmpDir(t);
    const tarball = packTarball(work);
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    assert.ok(
      listing.includes(`package/prebuilds/${process.platform}-${process.arch}/node.napi.glibc.node`),
      'the tarball ships the prebuilt addon',
    );
    assert.ok(listing.includes('package/deploy/systemd/sysgenidd.service'), 'and the units');
    if (spawnSync('aarch64-linux-gnu-gcc', ['--version'], { stdio: 'ignore' }).status === 0) {
      assert.ok(
        listing.includes('package/prebuilds/linux-arm64/node.napi.glibc.node'),
        'and the cross-built arm64 addon',
      );
    }
    assert.ok(!listing.some((f) => f.startsWith('package/build/')), 'and no local build');

    const bin = pathWithoutCompiler(work);
    for (const tool of ['cc', 'gcc', 'make', 'python3', 'g++']) {
      assert.notEqual(
        spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }).status,
        0,
        `${tool} is not on the PATH`,
      );
    }
    const prefix = path.join(work, 'prefix');
    const env = { ...process.env, PATH: bin, npm_config_node_gyp: '', NODE_EXTRA_CA_CERTS: '' };
    const install = spawnSync(
      'npm',
      ['i', '-g', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', '--prefix', prefix, tarball],
      { env, encoding: 'utf8' },
    );
    assert.equal(install.status, 0, `npm i -g failed:\n${install.stdout}\n${install.stderr}`);
    assert.match(
      install.stdout,
      /sysgenid: using the prebuilt native addon \(prebuilds\/linux-x64\/node\.napi\.glibc\.node\)/,
    );
    const pkg = path.join(prefix, 'lib/node_modules/sysgenid');
    assert.equal(fs.existsSync(path.join(pkg, 'build')), false, 'nothing was compiled');

    const version = spawnSync(path.join(prefix, 'bin/sysgenidd'), ['--version'], { env, encoding: 'utf8' });
    assert.equal(
      version.stdout,
      `sysgenidd ${JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')).version}\n`,
    );
    assert.match(
      spawnSync(path.join(prefix, 'bin/sysgenid'), ['--version'], { env, encoding: 'utf8' }).stdout,
      /^sysgenid [0-9.]+\n/,
    );

    const dir = path.join(work, 'run');
    const daemon = spawn(path.join(prefix, 'bin/sysgenidd'), ['--dir', dir, '--no-hooks', '--backends', 'none'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise((r) => daemon.on('exit', r));
    t.after(async () => {
      daemon.kill('SIGKILL');
      await exited;
    });
    let log = '';
    daemon.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
    await eventually(() => log.includes('ready: generation 0'), 10_000, 'the installed daemon ready');
    assert.match(log, /native addon loaded \(prebuilt prebuilds\/linux-x64\/node\.napi\.glibc\.node\)/);
    const status = spawnSync(path.join(prefix, 'bin/sysgenid'), ['status', '--dir', dir], { env, encoding: 'utf8' });
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /^native +loaded \(prebuilt prebuilds\/linux-x64\/node\.napi\.glibc\.node\)$/m);
    const { c } = await RawClient.open(runtimePaths(dir).watch);
    c.close();
  },
);
