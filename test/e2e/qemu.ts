// One QEMU process for the end-to-end test: its serial console (a Unix socket: read what the guest
// prints, type lines into it) and its QMP monitor (stop, migrate to a file, cont). Software emulation,
// because these machines are VMs themselves and have no usable KVM.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface VmOptions {
  readonly name: string;
  readonly qemu: string;
  readonly kernel: string;
  readonly initrd: string;
  /** Extra kernel command line, e.g. the scenario. */
  readonly append: string;
  /** The VM generation ID QEMU exposes to the guest. */
  readonly guid: string;
  readonly memMb: number;
  readonly smp: number;
  /** A migration stream to restore from (the clone's start), instead of booting. */
  readonly incoming?: string;
  /** Where the sockets and the console log go. */
  readonly runDir: string;
  /** false: no VM Generation ID device at all (a hypervisor without one). Default true. */
  readonly vmgenid?: boolean;
  /** More QEMU arguments (devices, chardevs, monitors). */
  readonly extraArgs?: readonly string[];
}

export interface ConsoleLine {
  readonly text: string;
  /** Host clock (performance.now()) when the line arrived. */
  readonly at: number;
}

export class Vm {
  readonly name: string;
  readonly guid: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly lines: ConsoleLine[] = [];
  readonly #logFile: string;
  #serial: net.Socket | undefined;
  #qmp: net.Socket | undefined;
  #qmpBuf = '';
  #qmpWaiters: Array<(msg: Record<string, unknown>) => void> = [];
  #partial = '';
  #lineWaiters = new Set<() => void>();
  #stderr = '';

  private constructor(opts: VmOptions, child: ChildProcess) {
    this.name = opts.name;
    this.guid = opts.guid;
    this.process = child;
    this.#logFile = path.join(opts.runDir, `${opts.name}.console.log`);
    child.stderr?.on('data', (d: Buffer) => {
      this.#stderr += d.toString();
    });
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        for (const w of this.#lineWaiters) w();
        resolve(code);
      }),
    );
  }

  static async start(opts: VmOptions): Promise<Vm> {
    const ser = path.join(opts.runDir, `${opts.name}.ser`);
    const qmp = path.join(opts.runDir, `${opts.name}.qmp`);
    fs.rmSync(ser, { force: true });
    fs.rmSync(qmp, { force: true });
    const args = [
      '-nographic',
      '-monitor',
      'none',
      '-nodefaults',
      '-no-user-config',
      '-chardev',
      `socket,id=s0,path=${ser},server=on,wait=on`,
      '-serial',
      'chardev:s0',
      '-qmp',
      `unix:${qmp},server=on,wait=off`,
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-machine',
      'q35',
      '-smp',
      String(opts.smp),
      '-m',
      String(opts.memMb),
      '-kernel',
      opts.kernel,
      '-initrd',
      opts.initrd,
      '-append',
      `console=ttyS0 loglevel=4 panic=-1 ${opts.append}`,
      ...(opts.vmgenid === false ? [] : ['-device', `vmgenid,id=vmgenid0,guid=${opts.guid}`]),
      '-no-reboot',
      ...(opts.extraArgs ?? []),
    ];
    if (opts.incoming) args.push('-incoming', `exec:cat ${opts.incoming}`);
    const child = spawn(opts.qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const vm = new Vm(opts, child);
    try {
      await vm.#connect(ser, qmp);
    } catch (err) {
      // Not yet in the caller's hands, so nobody else would stop it (no pid: it never ran).
      if (child.pid !== undefined) await vm.kill();
      throw err;
    }
    return vm;
  }

  async #connect(ser: string, qmp: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    // QEMU creates the serial socket and waits for a client before it runs anything.
    while (!fs.existsSync(ser)) {
      if (this.process.exitCode !== null || Date.now() > deadline) {
        throw new Error(`${this.name}: QEMU did not start (exit ${this.process.exitCode}): ${this.#stderr.trim()}`);
      }
      await sleep(20);
    }
    this.#serial = await connectUnix(ser);
    this.#serial.on('data', (d: Buffer) => this.#onConsole(d.toString('latin1')));
    this.#serial.on('error', () => undefined);
    while (!fs.existsSync(qmp)) {
      if (this.process.exitCode !== null || Date.now() > deadline)
        throw new Error(`${this.name}: no QMP socket: ${this.#stderr.trim()}`);
      await sleep(20);
    }
    this.#qmp = await connectUnix(qmp);
    this.#qmp.on('data', (d: Buffer) => this.#onQmp(d.toString()));
    this.#qmp.on('error', () => undefined);
    await this.#nextQmp(); // greeting
    await this.qmp('qmp_capabilities');
  }

  #onConsole(text: string): void {
    fs.appendFileSync(this.#logFile, text);
    const at = performance.now();
    const parts = (this.#partial + text).split(/\r?\n/);
    this.#partial = parts.pop() ?? '';
    for (const p of parts) this.lines.push({ text: p.replace(/\r/g, ''), at });
    for (const w of this.#lineWaiters) w();
  }

  #onQmp(text: string): void {
    this.#qmpBuf += text;
    let nl: number;
    while ((nl = this.#qmpBuf.indexOf('\n')) >= 0) {
      const line = this.#qmpBuf.slice(0, nl).trim();
      this.#qmpBuf = this.#qmpBuf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('event' in msg) continue;
      this.#qmpWaiters.shift()?.(msg);
    }
  }

  #nextQmp(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.#qmpWaiters.push(resolve));
  }

  async qmp(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.#nextQmp();
    this.#qmp?.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
    const msg = await reply;
    if ('error' in msg) throw new Error(`${this.name}: QMP ${execute}: ${JSON.stringify(msg.error)}`);
    return msg.return;
  }

  /** Type a line on the guest's console. */
  type(line: string): void {
    this.#serial?.write(line + '\n');
  }

  /** The first console line (from index `from`) matching `re`; rejects on timeout or QEMU exit. */
  async waitFor(
    re: RegExp,
    timeoutMs: number,
    from = 0,
  ): Promise<{ match: RegExpExecArray; line: ConsoleLine; index: number }> {
    const deadline = performance.now() + timeoutMs;
    for (let i = from; ;) {
      for (; i < this.lines.length; i++) {
        const line = this.lines[i] as ConsoleLine;
        const match = re.exec(line.text);
        if (match) return { match, line, index: i };
      }
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`${this.name}: QEMU exited while waiting for ${re}\n${this.tail()}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${re}\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#lineWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#lineWaiters.add(done);
      });
    }
  }

  /** A JSON report the guest agent printed as `E2E <TAG> {...}`. */
  async report<T>(tag: string, timeoutMs: number, from = 0): Promise<{ value: T; at: number; index: number }> {
    const { match, line, index } = await this.waitFor(new RegExp(`^E2E ${tag} (\\{.*\\})\\s*$`), timeoutMs, from);
    return { value: JSON.parse(match[1] as string) as T, at: line.at, index };
  }

  /** Types `command` and waits for the report it answers with, printed after it (not an earlier one). */
  async ask<T>(command: string, tag: string, timeoutMs: number): Promise<T> {
    const from = this.lines.length;
    this.type(command);
    return (await this.report<T>(tag, timeoutMs, from)).value;
  }

  /** The last console lines, for a failure message. */
  tail(n = 60): string {
    const lines = this.lines.slice(-n).map((l) => `  [${this.name}] ${l.text}`);
    if (this.#partial) lines.push(`  [${this.name}] ${this.#partial}`);
    if (this.#stderr.trim()) lines.push(`  [${this.name} qemu stderr] ${this.#stderr.trim()}`);
    return lines.join('\n');
  }

  /** Wait until an incoming migration has loaded (the guest is then paused). */
  async waitLoaded(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = (await this.qmp('query-status')) as { status: string };
      if (st.status !== 'inmigrate') return;
      if (Date.now() > deadline) throw new Error(`${this.name}: the snapshot did not load within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Stop the guest and write its whole state to `file`, the way a snapshot is taken. */
  async snapshotTo(file: string, timeoutMs: number): Promise<void> {
    await this.qmp('stop');
    await this.qmp('migrate', { uri: `exec:cat > ${file}` });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = (await this.qmp('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (st.status === 'completed') return;
      if (st.status === 'failed' || st.status === 'cancelled')
        throw new Error(`${this.name}: migration ${st.status}: ${st['error-desc'] ?? ''}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: the snapshot did not complete within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async kill(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
    await this.exited;
    this.#serial?.destroy();
    this.#qmp?.destroy();
  }
}

function connectUnix(file: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(file);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
