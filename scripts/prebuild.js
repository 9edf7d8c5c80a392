#!/usr/bin/env node
// `npm pack` (prepack) puts the N-API addon into prebuilds/<platform>-<arch>/ so that the package installs
// with its addon on a machine without a C toolchain; node-gyp-build finds it there at run time
// (src/native/addon.ts). N-API is ABI-stable, so one binary serves every Node >= 20 on this platform.
// Named with the glibc tag: a musl system (Alpine) must not pick it up; it builds or runs pure JS.
// linux-arm64 too when this is linux-x64 with Debian's cross compiler (gcc-aarch64-linux-gnu): an N-API
// addon links against nothing of Node's, so one gcc call with Node's headers builds it
// (test/prebuild-arm64.test.ts loads it in an arm64 Node under qemu-user).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const built = path.join(root, 'build/Release/sysgenid.node');
const source = path.join(root, 'native/sysgenid.c');

const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < fs.statSync(source).mtimeMs;
if (stale || process.argv.includes('--rebuild')) {
  const nodeGyp = process.env.npm_config_node_gyp;
  const [cmd, args] =
    nodeGyp && fs.existsSync(nodeGyp) ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']];
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

const cross = 'aarch64-linux-gnu-gcc';
const headers = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
const haveCross = spawnSync(cross, ['--version'], { stdio: 'ignore' }).status === 0;
if (
  `${process.platform}-${process.arch}` === 'linux-x64' &&
  haveCross &&
  fs.existsSync(path.join(headers, 'node_api.h'))
) {
  const armDir = path.join(root, 'prebuilds', 'linux-arm64');
  fs.mkdirSync(armDir, { recursive: true });
  const armOut = path.join(armDir, 'node.napi.glibc.node');
  // The flags of binding.gyp, as node-gyp passes them for a shared module.
  const r = spawnSync(
    cross,
    [
      '-shared',
      '-fPIC',
      '-s',
      '-O2',
      '-Wall',
      '-Wextra',
      '-Wno-unused-parameter',
      '-DBUILDING_NODE_EXTENSION',
      '-I',
      headers,
      source,
      '-o',
      armOut,
    ],
    { stdio: 'inherit' },
  );
  if (r.status !== 0) {
    console.error('prebuild: the linux-arm64 cross build failed');
    process.exit(1);
  }
  console.log(`prebuild: ${path.relative(root, armOut)} (${fs.statSync(armOut).size} bytes, cross-built)`);
} else {
  console.log("prebuild: no linux-arm64 binary (needs linux-x64 with gcc-aarch64-linux-gnu and Node's headers)");
}
