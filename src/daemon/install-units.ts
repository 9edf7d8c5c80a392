// sysgenidd install-units: write the systemd units shipped in deploy/systemd/ with ExecStart pointing at
// this installed package and this Node, so nobody edits ExecStart by hand (options go in the
// EnvironmentFile). docs/deploy.md explains the units line by line. A command of the daemon's program,
// not of the sysgenid client: it installs the daemon and talks to no daemon.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../package-root.js';
import { UsageError, parseFlags } from './options.js';

export const UNIT_FILES = ['sysgenidd.service', 'sysgenidd.socket', 'sysgenidd-control.socket'] as const;
const ENV_FILE = 'sysgenidd.env';
const SYSTEM_UNIT_DIR = '/etc/systemd/system';
const CONFIG_DIR = '/etc/sysgenid';

export interface RenderOptions {
  /** The package root: where dist/sysgenidd.cjs and deploy/systemd/ are. */
  readonly root: string;
  /** The Node binary ExecStart runs. */
  readonly node: string;
  /** Run as this system user instead of root (the non-root variant); undefined: root. */
  readonly user?: string | undefined;
}

/** The files to write, by path relative to the unit directory, from the templates in deploy/systemd/. */
export function renderUnits(opts: RenderOptions): Map<string, string> {
  const templates = path.join(opts.root, 'deploy', 'systemd');
  const daemon = path.join(opts.root, 'dist', 'sysgenidd.cjs');
  for (const p of [opts.node, daemon]) {
    // systemd splits ExecStart on whitespace and expands % and $: such a path would need quoting.
    if (/[\s%$"'\\]/.test(p)) throw new UsageError(`cannot put ${JSON.stringify(p)} into ExecStart (quote or move it)`);
  }
  const out = new Map<string, string>();
  for (const name of UNIT_FILES) {
    let text = fs.readFileSync(path.join(templates, name), 'utf8');
    text = text.replace(/^Documentation=file:.*$/m, `Documentation=file:${path.join(opts.root, 'docs', 'deploy.md')}`);
    if (name === 'sysgenidd.service') {
      text = text.replace(/^ExecStart=\S+ \S+/m, `ExecStart=${opts.node} ${daemon}`);
      // ProtectHome=yes hides /home, /root and /run/user: a Node or a package installed there would vanish.
      if ([opts.node, daemon].some((p) => /^\/(home|root|run\/user)(\/|$)/.test(p))) {
        text = text.replace(/^ProtectHome=yes$/m, 'ProtectHome=read-only');
      }
    }
    out.set(name, text);
  }
  if (opts.user !== undefined) {
    if (!/^[a-z_][a-z0-9_-]*$/.test(opts.user))
      throw new UsageError(`--user: not a user name: ${JSON.stringify(opts.user)}`);
    const dropIn = fs
      .readFileSync(path.join(templates, 'non-root.conf'), 'utf8')
      .replace(/^User=.*$/m, `User=${opts.user}`);
    out.set('sysgenidd.service.d/non-root.conf', dropIn);
  }
  return out;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
}

function groupExists(name: string, groupFile = '/etc/group'): boolean {
  try {
    return fs
      .readFileSync(groupFile, 'utf8')
      .split('\n')
      .some((l) => l.split(':')[0] === name);
  } catch {
    return false;
  }
}

function userExists(name: string): boolean {
  try {
    return fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .some((l) => l.split(':')[0] === name);
  } catch {
    return false;
  }
}

export const INSTALL_UNITS_USAGE = `Usage: sysgenidd install-units [--dest DIR] [--node PATH] [--user NAME] [--now]

Write sysgenidd.service, sysgenidd.socket and sysgenidd-control.socket (deploy/systemd/) into DIR with
ExecStart running this package's dist/sysgenidd.cjs with PATH, and /etc/sysgenid/sysgenidd.env (the
daemon's options, SYSGENIDD_OPTS) when it does not exist yet. With the default DIR it also creates the
"sysgenid" group (the control socket's) when missing and runs systemctl daemon-reload.

  --dest DIR      where to write the units (default: ${SYSTEM_UNIT_DIR}; another DIR writes only
                  the units there: nothing else is created, nothing reloaded)
  --node PATH     the Node binary ExecStart runs (default: the one running this command)
  --user NAME     run the daemon as system user NAME with CAP_SYSLOG (the non-root variant, a
                  drop-in sysgenidd.service.d/non-root.conf); the user is created when missing
  --now           then enable and start the sockets and the service
  -h, --help      show this help
`;

/** `sysgenidd install-units ...`: the exit code. */
export function installUnits(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): number {
  const values = parseFlags(argv, {
    dest: { type: 'string' },
    node: { type: 'string' },
    user: { type: 'string' },
    now: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    out(INSTALL_UNITS_USAGE);
    return 0;
  }
  const dest = path.resolve(values.dest ?? SYSTEM_UNIT_DIR);
  const system = dest === SYSTEM_UNIT_DIR;
  const node = path.resolve(values.node ?? process.execPath);
  if (!fs.existsSync(node)) throw new UsageError(`--node: ${node} does not exist`);
  if (values.now && !system) throw new UsageError(`--now needs the units in ${SYSTEM_UNIT_DIR} (no --dest)`);
  const files = renderUnits({ root: packageRoot(), node, user: values.user });
  if (system) {
    if (!groupExists('sysgenid')) {
      run('groupadd', ['--system', 'sysgenid']);
      out('created the system group sysgenid (it may use control.sock)\n');
    }
    if (values.user !== undefined && !userExists(values.user)) {
      run('useradd', [
        '--system',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        '--gid',
        'sysgenid',
        values.user,
      ]);
      out(`created the system user ${values.user}\n`);
    }
    fs.mkdirSync(CONFIG_DIR, { recursive: true, mode: 0o755 });
    const env = path.join(CONFIG_DIR, ENV_FILE);
    if (!fs.existsSync(env)) {
      fs.copyFileSync(path.join(packageRoot(), 'deploy', 'systemd', ENV_FILE), env);
      out(`wrote ${env}\n`);
    }
  }
  for (const [rel, text] of files) {
    const file = path.join(dest, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    // Written whole and renamed, so systemd never reads half a unit.
    fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
    fs.renameSync(`${file}.tmp`, file);
    out(`wrote ${file}\n`);
  }
  if (!values.user && system) {
    // A non-root drop-in left from an earlier --user would silently keep applying.
    fs.rmSync(path.join(dest, 'sysgenidd.service.d', 'non-root.conf'), { force: true });
  }
  if (system) {
    run('systemctl', ['daemon-reload']);
    if (values.now) {
      run('systemctl', ['enable', '--now', 'sysgenidd.socket', 'sysgenidd-control.socket', 'sysgenidd.service']);
    } else {
      out('next: systemctl enable --now sysgenidd.socket sysgenidd-control.socket sysgenidd.service\n');
    }
  }
  return 0;
}
