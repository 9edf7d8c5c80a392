// What a new user's install gets (issue 14): require('sysgenid') through the CommonJS bundle on any Node
// `engines` allows (not through Node's require-of-ESM), a TypeScript CommonJS project that compiles
// against the package, the LICENSE package.json names, and an addon build failure that says what is missing.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, startDaemon, tmpDir } from './helpers.js';

/** A project directory whose node_modules holds this package (and @types/node), as an install would. */
function project(t: Parameters<typeof tmpDir>[0], type: 'commonjs' | 'module'): string {
  const dir = tmpDir(t, 'sysgenid-consumer-');
  fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'sysgenid'));
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type }));
  return dir;
}

describe('CommonJS', () => {
  it('require("sysgenid") loads the CommonJS bundle, without require-of-ESM, and talks to a daemon', async (t) => {
    const d = await startDaemon(t);
    const dir = project(t, 'commonjs');
    const script = `
      const sysgenid = require('sysgenid');
      if (!require.resolve('sysgenid').endsWith('dist/index.cjs')) throw new Error(require.resolve('sysgenid'));
      for (const name of ['connect', 'Lifecycle', 'status', 'currentGeneration', 'SysgenidError', 'openProbe']) {
        if (typeof sysgenid[name] !== 'function') throw new Error(name + ' missing');
      }
      sysgenid.currentGeneration({ dir: process.argv[1] }).then((g) => console.log('generation ' + g));`;
    const r = spawnSync(process.execPath, ['--no-experimental-require-module', '-e', script, d.dir], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, NODE_EXTRA_CA_CERTS: '' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'generation 0\n');
  });

  it('a TypeScript project that compiles to CommonJS type-checks against the package (no TS1479)', (t) => {
    const dir = project(t, 'commonjs');
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'node16',
          moduleResolution: 'node16',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
        },
        files: ['index.ts'],
      }),
    );
    fs.writeFileSync(
      path.join(dir, 'index.ts'),
      `import { connect, type CycleReport, SysgenidError } from 'sysgenid';
export async function main(): Promise<number> {
  const w = await connect({ name: 'ts-cjs', waitForDaemon: 1000 });
  const r: CycleReport | undefined = undefined;
  void r;
  return w.generation + (new SysgenidError('EINVAL').code === 'EINVAL' ? 0 : 1);
}
`,
    );
    const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it("the CommonJS declarations are the library's own, under a package.json that says commonjs", () => {
    const dist = path.join(ROOT, 'dist');
    for (const file of ['client/index.d.ts', 'client/watcher.d.ts', 'protocol/cycle-report.d.ts']) {
      assert.equal(
        fs.readFileSync(path.join(dist, 'cjs-types', file), 'utf8'),
        fs.readFileSync(path.join(dist, 'src', file), 'utf8'),
        file,
      );
    }
    const marker = JSON.parse(fs.readFileSync(path.join(dist, 'cjs-types', 'package.json'), 'utf8')) as unknown;
    assert.deepEqual(marker, { type: 'commonjs' });
  });
});

describe('package metadata', () => {
  it('has the LICENSE its license field names, and says it is for Linux', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      license: string;
      os: string[];
    };
    assert.equal(pkg.license, 'Apache-2.0');
    assert.match(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
    assert.deepEqual(pkg.os, ['linux']);
    assert.ok(fs.existsSync(path.join(ROOT, 'CHANGELOG.md')));
  });
});

describe('the addon build at install', () => {
  /** Runs scripts/build-addon.js in a scratch directory with a node-gyp that fails as given. */
  function failedBuild(
    t: Parameters<typeof tmpDir>[0],
    gypOutput: string,
    tools: string[],
  ): { stderr: string; log: string } {
    const dir = tmpDir(t, 'sysgenid-addon-');
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    for (const tool of tools) fs.writeFileSync(path.join(bin, tool), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const gyp = path.join(dir, 'fake-node-gyp.js');
    fs.writeFileSync(gyp, `process.stderr.write(${JSON.stringify(gypOutput)}); process.exit(1);`);
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-addon.js')], {
      cwd: dir,
      encoding: 'utf8',
      env: { PATH: bin, npm_config_node_gyp: gyp },
    });
    assert.equal(r.status, 0, 'a failed addon never fails the install');
    return { stderr: r.stderr, log: fs.readFileSync(path.join(dir, 'build', 'addon-build.log'), 'utf8') };
  }

  it('with the toolchain present, a missing header download is named as such, and the output is kept', (t) => {
    const out = 'gyp ERR! stack Error: getaddrinfo ENOTFOUND nodejs.org (downloading headers)\n';
    const { stderr, log } = failedBuild(t, out, ['cc', 'make', 'python3']);
    assert.match(stderr, /could not find Node's headers/);
    assert.match(stderr, /npm_config_nodedir/);
    assert.doesNotMatch(stderr, /install a C toolchain/);
    assert.match(log, /getaddrinfo ENOTFOUND/);
  });

  it('without a compiler it names the missing tools', (t) => {
    const { stderr } = failedBuild(t, 'gyp ERR! stack Error: not found: make\n', ['python3']);
    assert.match(stderr, /install a C toolchain \(missing: cc, make;/);
  });
});
