// The package as users get it: `npm pack` with its prebuilt addon, and a PATH without a C compiler for
// installing it. Used by the install test and by the systemd end-to-end guest.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.js';

/** `npm pack` of the project as built now, with its prebuilt addon (scripts/prebuild.js), into `dir`. */
export function packTarball(dir: string): string {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/prebuild.js')], { cwd: ROOT, stdio: 'ignore' });
  // The build already ran (npm test and npm run test:e2e build first): only the pack itself.
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [info] = JSON.parse(out) as Array<{ filename: string }>;
  if (!info) throw new Error('npm pack printed nothing');
  return path.join(dir, info.filename);
}

/** A directory for PATH holding node, npm and sh (npm runs scripts with it) and nothing else: no cc, make or python. */
export function pathWithoutCompiler(dir: string): string {
  const bin = path.join(dir, 'nocc-bin');
  fs.mkdirSync(bin, { recursive: true });
  const link = (name: string, target: string): void => {
    fs.rmSync(path.join(bin, name), { force: true });
    fs.symlinkSync(target, path.join(bin, name));
  };
  link('sh', fs.realpathSync('/bin/sh'));
  const nodeDir = path.dirname(process.execPath);
  for (const name of ['node', 'npm', 'npx']) {
    const beside = path.join(nodeDir, name);
    link(
      name,
      fs.existsSync(beside) ? beside : execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim(),
    );
  }
  return bin;
}
