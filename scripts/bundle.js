#!/usr/bin/env node
// Bundles the two programs into one CommonJS file each (dist/sysgenidd.cjs, dist/sysgenid.cjs), and
// sysgenid/register for `node -r` (dist/register.cjs: CommonJS cannot load the ES module on every Node 20).
// Loading one file, with its Node built-ins through require(), instead of the daemon's 30-odd ES
// modules takes start-up from about 1.7x to about 1.2x a bare Node listener (docs/benchmarks.md): the
// daemon starts at boot and after every restart, and `sysgenid ready` runs as a readiness probe.
// The ES modules under dist/src stay as they are, for the library; the library is also bundled as
// CommonJS (dist/index.cjs, the `require` condition of package.json), so that require('sysgenid') works on
// every Node the `engines` field allows, not only on those that can require() an ES module (20.19 and
// later), and a TypeScript project that compiles to CommonJS gets declarations it may import (no TS1479):
// dist/cjs-types holds copies of the library's declarations under a package.json that says commonjs.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';

// esbuild turns every module's `import fs from 'node:fs'` into its own copy of the built-in's namespace
// (__toESM: a getter per export, for each of 30 importing modules), which alone took about a millisecond
// of the daemon's start-up. The modules imported by default share one require() of each instead: a
// virtual module whose default export is that require(). A named import of one of them would fail the
// build ("No matching export"), never silently misbehave.
const DEFAULT_IMPORTED = new Set(['crypto', 'fs', 'http', 'net', 'os', 'path', 'tls']);
const sharedBuiltins = {
  name: 'shared-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      if (args.namespace === 'shared-builtins') return { path: args.path, external: true };
      if (!DEFAULT_IMPORTED.has(args.path.slice(5)) || args.kind !== 'import-statement') return undefined;
      return { path: args.path, namespace: 'shared-builtins' };
    });
    b.onLoad({ filter: /.*/, namespace: 'shared-builtins' }, (args) => ({
      contents: `export default require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

const entries = {
  sysgenidd: 'dist/src/daemon/main.js',
  sysgenid: 'dist/src/cli/main.js',
  register: 'dist/src/client/register.js',
  // In dist/ itself, next to the programs, so the addon loader finds build/Release from it as from them.
  index: 'dist/src/client/index.js',
};
for (const [name, entry] of Object.entries(entries)) {
  const outfile = `dist/${name}.cjs`;
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // The sources are ES modules; the one use of import.meta.url (finding the addon) gets this file's URL.
    define: { 'import.meta.url': '__bundleUrl' },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    // src/daemon/metrics.ts and install-units.ts are not in the bundle at all: main.ts imports them from
    // dist/src when a run needs them (a dynamic import of a bundled module would make esbuild wrap every
    // module for lazy initialisation, which costs start-up). prom-client comes with metrics.ts.
    plugins: [sharedBuiltins],
    logLevel: 'warning',
  });
  if (name !== 'index') fs.chmodSync(outfile, 0o755);
}

const types = 'dist/cjs-types';
fs.rmSync(types, { recursive: true, force: true });
for (const dir of ['client', 'core', 'native', 'protocol', '.']) {
  const from = path.join('dist/src', dir);
  for (const file of fs.readdirSync(from).filter((f) => f.endsWith('.d.ts'))) {
    fs.mkdirSync(path.join(types, dir), { recursive: true });
    fs.copyFileSync(path.join(from, file), path.join(types, dir, file));
  }
}
fs.writeFileSync(path.join(types, 'package.json'), '{ "type": "commonjs" }\n');
