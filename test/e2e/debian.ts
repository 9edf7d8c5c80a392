// Debian's own packages for the test machines (the guest kernel, the systemd guest's root file system, the
// arm64 Node of the prebuild test): fetched with `apt-get download` and unpacked with `dpkg -x`, never
// installed, so the host system stays as it is. Each set is unpacked once into a directory under .cache/
// that later runs reuse, since the downloads are the slow part and the packages do not change within a run.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Alternatives `apt-cache depends` lists beside the ones Debian installs by default: elogind beside
 * libsystemd0, cdebconf (and the libraries only it needs) beside debconf. Unpacked, they would overwrite
 * the default's files.
 */
const NOT_DEFAULT = new Set([
  'libelogind0',
  'cdebconf',
  'libdebian-installer4',
  'libnewt0.52',
  'libslang2',
  'libtextwrap1',
]);

/** `packages` and everything they need to run (no recommends), as sorted package names; `apt`: options for apt. */
export function dependencyClosure(packages: readonly string[], apt: readonly string[] = []): string[] {
  const out = execFileSync(
    'apt-cache',
    [
      ...apt,
      'depends',
      '--recurse',
      '--no-recommends',
      '--no-suggests',
      '--no-conflicts',
      '--no-breaks',
      '--no-replaces',
      '--no-enhances',
      ...packages,
    ],
    { encoding: 'utf8', maxBuffer: 16 << 20 },
  );
  const names = new Set<string>();
  for (const line of out.split('\n')) {
    // Indented lines are the relations of the package above; <name> is a virtual package, provided by another.
    if (line === '' || line.startsWith(' ') || line.startsWith('<')) continue;
    const name = line.trim().replace(/:[a-z0-9]+$/, '');
    if (!NOT_DEFAULT.has(name)) names.add(name);
  }
  return [...names].sort();
}

/** Downloads `packages` and unpacks them all into `root`; the .deb files are removed once unpacked. */
export function unpackPackages(packages: readonly string[], root: string, apt: readonly string[] = []): void {
  fs.mkdirSync(root, { recursive: true });
  const debs = fs.mkdtempSync(path.join(path.dirname(root), 'debs-'));
  try {
    // stderr is kept for the error message: apt-get says there which package it could not fetch.
    execFileSync('apt-get', [...apt, 'download', '-q', ...packages], {
      cwd: debs,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const files = fs.readdirSync(debs).filter((f) => f.endsWith('.deb'));
    if (files.length === 0) throw new Error(`apt-get download ${packages.join(' ')} left no .deb`);
    for (const deb of files) execFileSync('dpkg', ['-x', path.join(debs, deb), root]);
  } finally {
    fs.rmSync(debs, { recursive: true, force: true });
  }
}

/**
 * Fills `dir` once: an earlier run's result is reused if its `done` marker exists, which is written only
 * after `fill` returned, so that a download interrupted halfway is started again rather than half-used.
 * Returns the marker's text: what `fill` returned (to remember about the contents), then the time.
 */
export function fillOnce(dir: string, fill: (dir: string) => string | void): string {
  const done = path.join(dir, 'done');
  if (fs.existsSync(done)) return fs.readFileSync(done, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const note = fill(dir);
  const text = `${typeof note === 'string' ? `${note}, ` : ''}${new Date().toISOString()}\n`;
  fs.writeFileSync(done, text);
  return text;
}
