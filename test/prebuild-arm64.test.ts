// The linux-arm64 prebuilt addon (scripts/prebuild.js cross-builds it with Debian's gcc-aarch64-linux-gnu)
// loads and works in a real arm64 Node: Debian's nodejs for arm64, unpacked from its packages into
// .cache/arm64-node/ (fetched once with apt-get, from package lists kept there, apart from the
// machine's), run under qemu-user. Found the way the installed package finds it (node-gyp-build,
// prebuilt binaries only, since build/ holds this machine's x64 build).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { dependencyClosure, fillOnce, unpackPackages } from './e2e/debian.js';
import { ROOT, tmpDir } from './helpers.js';

const QEMU = 'qemu-aarch64-static';
const have = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const ready = process.platform === 'linux' && process.arch === 'x64' && have(QEMU) && have('aarch64-linux-gnu-gcc');
// The binary is the same in both passes of npm test; it is load-tested once.
const skip =
  process.env.SYSGENID_NO_ADDON === '1'
    ? 'tested once, in the pass with the addon'
    : !ready && 'needs linux-x64 with gcc-aarch64-linux-gnu and qemu-user-static';

/** Debian's arm64 nodejs and its libraries, unpacked once; the directory to give qemu as its root. */
function arm64Node(): string {
  const cache = path.join(ROOT, '.cache', 'arm64-node');
  const root = path.join(cache, 'root');
  fillOnce(cache, () => {
    // Lists for arm64 kept here: the machine's own apt configuration is left as it is.
    const state = path.join(cache, 'apt');
    for (const d of ['state/lists/partial', 'cache/archives/partial'])
      fs.mkdirSync(path.join(state, d), { recursive: true });
    fs.writeFileSync(path.join(state, 'state/status'), '');
    const apt = [
      '-q',
      '-o',
      'APT::Architecture=arm64',
      '-o',
      'APT::Architectures::=arm64',
      '-o',
      `Dir::State=${state}/state`,
      '-o',
      `Dir::State::status=${state}/state/status`,
      '-o',
      `Dir::Cache=${state}/cache`,
    ];
    execFileSync('apt-get', [...apt, 'update'], { stdio: 'ignore' });
    unpackPackages(dependencyClosure(['nodejs'], apt), root, apt);
    fs.rmSync(state, { recursive: true, force: true });
  });
  return root;
}

it('the linux-arm64 prebuilt addon loads in an arm64 Node (qemu-user) and works', { skip }, (t) => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/prebuild.js')], { cwd: ROOT, stdio: 'ignore' });
  const binary = path.join(ROOT, 'prebuilds/linux-arm64/node.napi.glibc.node');
  assert.match(execFileSync('file', ['-b', binary], { encoding: 'utf8' }), /ELF 64-bit LSB shared object, ARM aarch64/);
  const root = arm64Node();
  const page = path.join(tmpDir(t), 'page');
  const page4 = Buffer.alloc(4096);
  page4.writeUInt32LE(7, 0);
  fs.writeFileSync(page, page4);
  const script = `
    const { createRequire } = require('node:module');
    const req = createRequire(${JSON.stringify(path.join(ROOT, 'package.json'))});
    const file = req('node-gyp-build').path(${JSON.stringify(ROOT)});
    const a = req(file);
    const fs = require('node:fs');
    const fd = fs.openSync(${JSON.stringify(page)}, 'r');
    console.log(JSON.stringify({ arch: process.arch, node: process.version, napi: process.versions.napi,
      file: require('node:path').relative(${JSON.stringify(ROOT)}, file),
      page: new Uint32Array(a.mapFile(${JSON.stringify(page)}, 4096))[0], flock: a.flock(fd, 2 | 4),
      sdNotify: a.sdNotify('/nonexistent/notify', 'READY=1') }));`;
  const r = spawnSync(QEMU, ['-L', root, path.join(root, 'usr/bin/node'), '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, PREBUILDS_ONLY: '1', NODE_EXTRA_CA_CERTS: '' },
  });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as Record<string, unknown>;
  t.diagnostic(`arm64: ${JSON.stringify(got)}`);
  assert.equal(got.arch, 'arm64');
  assert.equal(got.file, 'prebuilds/linux-arm64/node.napi.glibc.node');
  assert.equal(got.page, 7, 'the page mapped through the addon');
  assert.equal(got.flock, 0);
  assert.equal(got.sdNotify, -2, 'ENOENT from sendto: the call went through to the kernel');
});
