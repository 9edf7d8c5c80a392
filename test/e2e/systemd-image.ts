// Builds the guest for the systemd end-to-end test (systemd.e2e.ts): a minimal Debian root file system
// whose PID 1 is Debian's systemd, unpacked from Debian's own packages (downloaded once with apt-get and
// kept under .cache/e2e/systemd/, like the kernel), plus this machine's node and the package as an
// operator installs it: `npm pack`, then `npm i -g` of the tarball with no C compiler on PATH. The whole
// tree is the initramfs: systemd runs from it as the root file system (no /etc/initrd-release, so it
// does not take itself for an initrd).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dependencyClosure, fillOnce, unpackPackages } from './debian.js';
import { CACHE, MissingToolError, REPO, addNode, packInitramfs } from './guest-image.js';
import { packTarball, pathWithoutCompiler } from '../package-helpers.js';

/** What the root file system is made of; apt-cache adds their dependencies. */
const PACKAGES = ['systemd', 'systemd-sysv', 'bash', 'coreutils', 'util-linux', 'mount', 'passwd', 'procps', 'dbus'];

export interface SystemdGuest {
  readonly initrd: string;
  readonly initrdBytes: number;
  readonly tarball: string;
  readonly packages: number;
  readonly systemdVersion: string;
  readonly buildMs: number;
  /** What `npm i -g` printed about the addon (its install script). */
  readonly installLog: string;
}

/** Debian's packages unpacked into one tree, once; later runs reuse it. */
function baseRoot(): { root: string; packages: number } {
  const root = path.join(CACHE, 'systemd', 'root');
  const done = fillOnce(path.join(CACHE, 'systemd'), () => {
    let pkgs: string[];
    try {
      pkgs = dependencyClosure(PACKAGES);
    } catch (err) {
      throw new MissingToolError(
        `apt-cache depends failed (${(err as Error).message.split('\n')[0]}): run apt-get update`,
      );
    }
    unpackPackages(pkgs, root);
    return `${pkgs.length} packages`;
  });
  return { root, packages: Number(done.split(' ')[0]) };
}

export function buildSystemdGuest(work: string): SystemdGuest {
  const started = Date.now();
  const { root: base, packages } = baseRoot();
  const tree = path.join(work, 'sd-tree');
  fs.rmSync(tree, { recursive: true, force: true });
  execFileSync('cp', ['-a', base, tree]);

  // Debian's maintainer scripts never ran: the few files they would have made.
  const passwd =
    'root:x:0:0:root:/root:/bin/bash\nmessagebus:x:100:101::/nonexistent:/usr/sbin/nologin\n' +
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
  fs.writeFileSync(path.join(tree, 'etc/passwd'), passwd);
  fs.writeFileSync(
    path.join(tree, 'etc/shadow'),
    'root:*:19000:0:99999:7:::\nmessagebus:*:19000::::::\nnobody:*:19000::::::\n',
    { mode: 0o640 },
  );
  fs.writeFileSync(
    path.join(tree, 'etc/group'),
    'root:x:0:\nadm:x:4:\nmessagebus:x:101:\nsystemd-journal:x:999:\nnogroup:x:65534:\n',
  );
  fs.writeFileSync(
    path.join(tree, 'etc/gshadow'),
    'root:*::\nadm:*::\nmessagebus:!::\nsystemd-journal:!::\nnogroup:*::\n',
    { mode: 0o640 },
  );
  fs.writeFileSync(path.join(tree, 'etc/machine-id'), '');
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'sysgenid-e2e\n');
  fs.writeFileSync(path.join(tree, 'etc/fstab'), '');
  for (const d of [
    'proc',
    'sys',
    'dev',
    'run',
    'tmp',
    'root',
    'var/tmp',
    'var/log',
    'etc/systemd/system/multi-user.target.wants',
  ]) {
    fs.mkdirSync(path.join(tree, d), { recursive: true });
  }
  fs.chmodSync(path.join(tree, 'tmp'), 0o1777);
  // No login prompt on the console the test reads, and nothing that waits for hardware this guest lacks.
  for (const unit of [
    'serial-getty@ttyS0.service',
    'getty@tty1.service',
    'systemd-firstboot.service',
    'systemd-timesyncd.service',
    'apt-daily.timer',
    'apt-daily-upgrade.timer',
    'e2scrub_all.timer',
    'fstrim.timer',
  ]) {
    fs.symlinkSync('/dev/null', path.join(tree, 'etc/systemd/system', unit));
  }

  // Where a tarball install of Node puts it.
  addNode(tree, 'usr/local/bin/node');

  // The package as an operator installs it: the packed tarball, npm i -g, no compiler on PATH.
  const tarball = packTarball(work);
  const bin = pathWithoutCompiler(work);
  const prefix = path.join(tree, 'usr/local');
  const installLog = execFileSync(
    'npm',
    ['i', '-g', '--no-audit', '--no-fund', '--foreground-scripts', '--prefix', prefix, tarball],
    {
      encoding: 'utf8',
      env: { ...process.env, PATH: bin, npm_config_node_gyp: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );

  // The scenario's agent, run by systemd once the system is up; it prints E2E lines on the console.
  const app = path.join(tree, 'e2e');
  fs.cpSync(path.join(REPO, 'dist/test/e2e/guest/systemd-agent.js'), path.join(app, 'systemd-agent.mjs'));
  fs.writeFileSync(
    path.join(tree, 'etc/systemd/system/e2e-agent.service'),
    `[Unit]
Description=sysgenid end-to-end agent
After=multi-user.target
[Service]
Type=simple
ExecStart=/usr/local/bin/node /e2e/systemd-agent.mjs
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
`,
  );
  fs.symlinkSync(
    '/etc/systemd/system/e2e-agent.service',
    path.join(tree, 'etc/systemd/system/multi-user.target.wants/e2e-agent.service'),
  );
  fs.symlinkSync('/lib/systemd/systemd', path.join(tree, 'init'));

  const initrd = path.join(work, 'systemd-initrd.cpio.gz');
  const initrdBytes = packInitramfs(tree, initrd);
  const shared = ['usr/lib/x86_64-linux-gnu/systemd', 'lib/systemd', 'usr/lib/systemd']
    .flatMap((d) => {
      try {
        return fs.readdirSync(path.join(tree, d));
      } catch {
        return [];
      }
    })
    .map((f) => /^libsystemd-shared-([0-9][^.]*)\.so$/.exec(f)?.[1])
    .find(Boolean);
  const version = shared ?? 'unknown';
  fs.rmSync(tree, { recursive: true, force: true });
  return {
    initrd,
    initrdBytes,
    tarball,
    packages,
    systemdVersion: version,
    buildMs: Date.now() - started,
    installLog,
  };
}
