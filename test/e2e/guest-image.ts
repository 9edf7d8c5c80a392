// Builds the guest for the end-to-end clone test: Debian's 6.12 cloud kernel (CONFIG_VMGENID=y), and an
// initramfs holding busybox, this machine's node binary with its libraries, CRIU with its libraries,
// the kernel modules CRIU needs, and this project's built output. The kernel package is downloaded once
// and kept under .cache/e2e/; the initramfs is rebuilt on every run because it holds the code under test.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { fillOnce, unpackPackages } from './debian.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CACHE = path.join(REPO, '.cache', 'e2e');

/** Modules CRIU needs in the guest, loaded in this order after their dependencies. */
const CRIU_MODULES = [
  'lib/libcrc32c',
  'net/netfilter/nfnetlink',
  'net/netfilter/nf_tables',
  'net/ipv4/inet_diag',
  'net/ipv4/tcp_diag',
  'net/ipv4/udp_diag',
  'net/ipv4/raw_diag',
  'net/unix/unix_diag',
  'net/netlink/netlink_diag',
  'net/packet/af_packet_diag',
  'drivers/net/tun',
  'drivers/net/veth',
];

export interface Guest {
  readonly kernel: string;
  readonly initrd: string;
  /** The QEMU that boots it. */
  readonly qemu: string;
  /** The kernel package the guest runs, e.g. linux-image-6.12.117+deb12-cloud-amd64-unsigned. */
  readonly kernelPackage: string;
  readonly initrdBytes: number;
  readonly buildMs: number;
}

export class MissingToolError extends Error {}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

/** The host tools the test needs, or an error naming the packages that provide them. */
function requireTools(): { qemu: string; busybox: string; criu: string } {
  const qemu = which('qemu-system-x86_64');
  const busybox = fs.existsSync('/bin/busybox') ? '/bin/busybox' : which('busybox');
  const criu = which('criu');
  const missing = [
    qemu ? '' : 'qemu-system-x86',
    busybox ? '' : 'busybox-static',
    criu ? '' : 'criu',
    which('cpio') ? '' : 'cpio',
    which('dpkg') ? '' : 'dpkg',
    which('apt-get') ? '' : 'apt',
  ].filter(Boolean);
  if (missing.length > 0 || !qemu || !busybox || !criu) {
    throw new MissingToolError(
      `the end-to-end test needs: apt-get install --no-install-recommends ${missing.join(' ')}`,
    );
  }
  // The guest has no libraries for it: it must be the static build.
  let dynamic = true;
  try {
    execFileSync('ldd', [busybox], { stdio: 'ignore' });
  } catch {
    dynamic = false;
  }
  if (dynamic) throw new MissingToolError(`${busybox} is dynamically linked; install busybox-static`);
  return { qemu, busybox, criu };
}

/** The newest 6.12 cloud kernel Debian offers (the version moves with security updates), unpacked once. */
function kernelPackage(): { pkg: string; root: string; vmlinuz: string } {
  const cache = path.join(CACHE, 'kernel');
  fs.mkdirSync(cache, { recursive: true });
  let pkg: string | undefined;
  try {
    const out = execFileSync(
      'apt-cache',
      ['search', '--names-only', '^linux-image-6\\.12\\.[0-9]+\\+deb[0-9]+-cloud-amd64-unsigned$'],
      { encoding: 'utf8' },
    );
    pkg = out
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean)
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
      .pop();
  } catch {
    pkg = undefined;
  }
  // Offline or without package lists: use what an earlier run unpacked.
  if (!pkg)
    pkg = fs
      .readdirSync(cache)
      .filter((d) => fs.existsSync(path.join(cache, d, 'done')))
      .sort()
      .pop();
  if (!pkg) throw new MissingToolError('no linux-image-6.12.*-cloud-amd64-unsigned package found: run apt-get update');
  const name = pkg;
  const root = path.join(cache, name, 'x');
  fillOnce(path.join(cache, name), () => unpackPackages([name], root));
  const vmlinuz = fs.readdirSync(path.join(root, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuz) throw new Error(`no vmlinuz in ${pkg}`);
  return { pkg, root, vmlinuz: path.join(root, 'boot', vmlinuz) };
}

/** Shared libraries and the loader a dynamically linked binary needs, as ldd names them. */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

/** Copies the file `src` (a link: its target) to `dest` inside the guest's tree. */
export function copyInto(tree: string, src: string, dest: string = src, mode?: number): void {
  const target = path.join(tree, dest);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  // A link already there (Debian's trees have many) would be written through, possibly to the host's own file.
  fs.rmSync(target, { force: true });
  fs.copyFileSync(fs.realpathSync(src), target);
  if (mode !== undefined) fs.chmodSync(target, mode);
}

function copyTree(tree: string, src: string, dest: string): void {
  fs.cpSync(src, path.join(tree, dest), { recursive: true, dereference: true });
}

/** The libraries `binaries` need that the tree lacks (a Debian root keeps its own versions). */
function addLibraries(tree: string, binaries: readonly string[]): void {
  for (const lib of new Set(binaries.flatMap(sharedLibraries))) {
    if (!fs.existsSync(path.join(tree, lib))) copyInto(tree, lib);
  }
}

/**
 * The node that runs the tests, at `dest` in the tree, with its libraries: the same binary, so that the
 * addon built for it loads in the guest too. `others` are binaries whose libraries are added with it.
 */
export function addNode(tree: string, dest: string, others: readonly string[] = []): void {
  const node = fs.realpathSync(process.execPath);
  copyInto(tree, node, dest, 0o755);
  try {
    execFileSync('strip', ['--strip-unneeded', path.join(tree, dest)]);
  } catch {
    // Only size is lost.
  }
  addLibraries(tree, [node, ...others]);
}

/** Module names a .ko declares in its modinfo "depends=" field. */
function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at < 0) return [];
  const end = ko.indexOf(0, at + 1);
  return ko
    .subarray(at + 9, end)
    .toString('latin1')
    .split(',')
    .filter(Boolean);
}

function addModules(tree: string, kernelRoot: string): string[] {
  const version = fs.readdirSync(path.join(kernelRoot, 'lib/modules'))[0] as string;
  const base = path.join(kernelRoot, 'lib/modules', version, 'kernel');
  const order: string[] = [];
  const loaded = new Set<string>();
  for (const rel of CRIU_MODULES) {
    const ko = execFileSync('xz', ['-dc', path.join(base, `${rel}.ko.xz`)], { maxBuffer: 64 << 20 });
    const name = path.basename(rel);
    for (const dep of moduleDepends(ko)) {
      if (!loaded.has(dep)) throw new Error(`module ${name} needs ${dep}, which is not loaded before it`);
    }
    fs.mkdirSync(path.join(tree, 'lib/modules'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'lib/modules', `${name}.ko`), ko);
    loaded.add(name);
    order.push(name);
  }
  fs.writeFileSync(path.join(tree, 'lib/modules/order'), order.join('\n') + '\n');
  return order;
}

/** Writes a newc cpio archive of `tree` (the format the kernel unpacks as its initramfs), gzip-compressed. */
export function packInitramfs(tree: string, out: string): number {
  const list = execFileSync('find', ['.', '-mindepth', '1'], { cwd: tree, maxBuffer: 64 << 20 });
  const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], {
    cwd: tree,
    input: list,
    maxBuffer: 1 << 30,
  });
  const gz = zlib.gzipSync(cpio, { level: 1 });
  fs.writeFileSync(out, gz);
  return gz.length;
}

export function buildGuest(work: string): Guest {
  const started = Date.now();
  const tools = requireTools();
  const kernel = kernelPackage();

  const tree = path.join(work, 'tree');
  fs.rmSync(tree, { recursive: true, force: true });
  for (const d of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'proc',
    'sys',
    'dev',
    'tmp',
    'run',
    'root',
    'etc',
    'var/tmp',
  ]) {
    fs.mkdirSync(path.join(tree, d), { recursive: true });
  }

  copyInto(tree, tools.busybox, 'bin/busybox', 0o755);
  const applets = execFileSync(tools.busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) {
    const link = path.join(tree, applet);
    if (fs.existsSync(link)) continue;
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync('/bin/busybox', link);
  }

  copyInto(tree, tools.criu, 'usr/sbin/criu', 0o755);
  addNode(tree, 'usr/bin/node', [tools.criu]);
  addModules(tree, kernel.root);

  fs.writeFileSync(
    path.join(tree, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  fs.writeFileSync(path.join(tree, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');

  // The project as `npm install` leaves it: built output, the addon, package.json (for "type": "module").
  const app = 'app';
  copyInto(tree, path.join(REPO, 'package.json'), `${app}/package.json`);
  copyTree(tree, path.join(REPO, 'dist/src'), `${app}/dist/src`);
  for (const bin of ['sysgenidd.cjs', 'sysgenid.cjs', 'register.cjs']) {
    copyInto(tree, path.join(REPO, 'dist', bin), `${app}/dist/${bin}`, 0o755);
  }
  copyTree(tree, path.join(REPO, 'dist/test/e2e/guest'), `${app}/dist/test/e2e/guest`);
  copyTree(tree, path.join(REPO, 'examples'), `${app}/examples`);
  const addon = path.join(REPO, 'build/Release/sysgenid.node');
  if (fs.existsSync(addon)) copyInto(tree, addon, `${app}/build/Release/sysgenid.node`);
  // Examples import the package by name.
  fs.mkdirSync(path.join(tree, app, 'node_modules'), { recursive: true });
  fs.symlinkSync('..', path.join(tree, app, 'node_modules/sysgenid'));
  // The programs as they ship (package.json "bin"): the bundles.
  for (const name of ['sysgenid', 'sysgenidd']) {
    fs.writeFileSync(
      path.join(tree, 'usr/bin', name),
      `#!/bin/sh\nexec /usr/bin/node /${app}/dist/${name}.cjs "$@"\n`,
      { mode: 0o755 },
    );
  }
  // CRIU takes a path for its action script (docs/backends/criu.md).
  fs.writeFileSync(path.join(tree, 'usr/sbin/sysgenid-criu-action'), '#!/bin/sh\nexec sysgenid criu-action "$@"\n', {
    mode: 0o755,
  });
  copyInto(tree, path.join(REPO, 'test/e2e/guest/init.sh'), 'init', 0o755);

  const initrd = path.join(work, 'initrd.cpio.gz');
  const initrdBytes = packInitramfs(tree, initrd);
  fs.rmSync(tree, { recursive: true, force: true });
  return {
    kernel: kernel.vmlinuz,
    initrd,
    qemu: tools.qemu,
    kernelPackage: kernel.pkg,
    initrdBytes,
    buildMs: Date.now() - started,
  };
}

/** For the report: which kernel, how large the initramfs, how long the build took. */
export function guestSummary(guest: Guest): string {
  return (
    `${guest.kernelPackage}, initramfs ${(guest.initrdBytes / 1e6).toFixed(1)} MB, built in ` +
    `${(guest.buildMs / 1000).toFixed(1)} s`
  );
}

/** The guest kernel and QEMU alone, for scenarios that build their own root file system (systemd.e2e.ts). */
export function guestKernel(): { kernel: string; qemu: string; kernelPackage: string } {
  const qemu = which('qemu-system-x86_64');
  if (!qemu) {
    throw new MissingToolError('the end-to-end test needs: apt-get install --no-install-recommends qemu-system-x86');
  }
  const { pkg, vmlinuz } = kernelPackage();
  return { kernel: vmlinuz, qemu, kernelPackage: pkg };
}
