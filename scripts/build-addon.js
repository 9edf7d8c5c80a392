// `npm install` gives the package its optional native addon. A prebuilt binary shipped in prebuilds/ (npm
// pack puts one there, scripts/prebuild.js) is used when it loads here, so no compiler is needed; else it
// is built with node-gyp. Without a compiler or Node's headers it prints one clear warning and the
// project runs on its pure-JS fallback: a failed addon never fails the install.
// npm shows an install script's output only with --foreground-scripts, so the reason and the whole
// build output are also kept in build/addon-build.log, and the advice names what is really missing: the
// toolchain, or (with the toolchain there) Node's headers, which node-gyp downloads unless told where.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const LOG = path.join('build', 'addon-build.log');

if (process.env.SYSGENID_NO_ADDON === '1') {
  console.log('sysgenid: SYSGENID_NO_ADDON=1, not building the native addon');
  process.exit(0);
}

/** True when `name` is an executable on PATH. */
function onPath(name) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const prebuilt = path.join('prebuilds', `${process.platform}-${process.arch}`, 'node.napi.glibc.node');
// In a checkout whose C source changed since the last npm pack, the prebuilt binary is stale. (npm pack
// gives every file in the tarball the same time, so an installed package always takes its prebuilt one.)
const stale = (() => {
  try {
    return fs.statSync('native/sysgenid.c').mtimeMs > fs.statSync(prebuilt).mtimeMs;
  } catch {
    return false;
  }
})();
const fromSource = process.env.npm_config_build_from_source === 'true' || stale;
if (!fromSource && fs.existsSync(prebuilt)) {
  try {
    createRequire(import.meta.url)(path.resolve(prebuilt));
    console.log(`sysgenid: using the prebuilt native addon (${prebuilt})`);
    process.exit(0);
  } catch (err) {
    console.log(`sysgenid: the prebuilt addon does not load here (${err.message.split('\n')[0]}); building it`);
  }
}

const nodeGyp = process.env.npm_config_node_gyp;
const cmd = nodeGyp && fs.existsSync(nodeGyp) ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const r = spawnSync(cmd[0], cmd[1], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  fs.rmSync(LOG, { force: true });
  console.log('sysgenid: native addon built (build/Release/sysgenid.node)');
  process.exit(0);
}
const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
const why = r.error
  ? r.error.message
  : output
      .trim()
      .split('\n')
      .filter((l) => /error/i.test(l))
      .slice(0, 3)
      .join('; ');
const missing = ['cc', 'make', 'python3'].filter((tool) => !onPath(tool));
const headers = /headers|nodedir|common\.gypi|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|getaddrinfo|tarball|node\.h/i.test(
  output,
);
let advice;
if (missing.length > 0) {
  advice =
    `install a C toolchain (missing: ${missing.join(', ')}; on Debian: apt-get install build-essential ` +
    'python3) and run npm rebuild';
} else if (headers) {
  advice =
    "the toolchain is there but node-gyp could not find Node's headers (it downloads them from " +
    'nodejs.org): allow that download, or point npm_config_nodedir at a Node source or headers tree ' +
    '(the directory that holds include/node) and run npm rebuild';
} else {
  advice = `see ${LOG} for the whole build output`;
}
const message =
  `sysgenid: WARNING: the optional native addon could not be built ` +
  `(${why || `node-gyp exited with ${r.status}`}).\n` +
  'sysgenid: it works without it (pure-JS fallback: the probe uses pread, no verified peer credentials).\n' +
  `sysgenid: to build it, ${advice}.\n`;
try {
  fs.mkdirSync('build', { recursive: true });
  fs.writeFileSync(LOG, `${message}\n${output}`);
} catch {
  // The warning below still says it all.
}
process.stderr.write(message);
process.exit(0);
