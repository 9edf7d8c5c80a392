#!/usr/bin/env node
// `npm pack` (prepack) puts the N-API addon into prebuilds/<platform>-<arch>/ so that the package installs
// with its addon on a machine without a C toolchain; node-gyp-build finds it there at run time
// (src/native/addon.ts). N-API is ABI-stable, so one binary serves every Node >= 20 on this platform.
// Named with the glibc tag: a musl system (Alpine) must not pick it up; it builds or runs pure JS.
// Only the platform this runs on: linux-arm64 needs a cross build and an arm64 Node to load-test it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const built = path.join(root, 'build/Release/sysgenid.node');
const source = path.join(root, 'native/sysgenid.c');

const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs;
if (stale || process.argv.includes('--rebuild')) {
  const nodeGyp = process.env.npm_config_node_gyp;
  const [cmd, args] = nodeGyp && fs.existsSync(nodeGyp)
    ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('prebuild: the addon did not build; a package without its prebuilt addon is not shipped');
    process.exit(1);
  }
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const out = path.join(dir, 'node.napi.glibc.node');
fs.copyFileSync(built, out);
console.log(`prebuild: ${path.relative(root, out)} (${fs.statSync(out).size} bytes)`);
