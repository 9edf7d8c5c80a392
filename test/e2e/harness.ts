// What every end-to-end scenario file does around its checks, kept in one place so that the scenarios
// cannot drift apart in it: a work directory in the system's temporary directory; the guest built before
// the tests, where a missing host tool skips them (but fails them in CI, which installs the tools, so
// there it is a fault); every VM killed and the work directory removed after them, so that a failed run
// leaves no QEMU behind; and a report, `# ...` lines printed as the test goes and kept under .cache/e2e/
// to read after the run. E2E_ONLY=<scenario> runs one scenario alone; E2E_KEEP=1 keeps the work directory.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CACHE, MissingToolError } from './guest-image.js';
import { Vm, type VmOptions } from './qemu.js';

const only = process.env.E2E_ONLY || undefined;

export interface ScenarioOptions<G> {
  /** Part of the work directory's name, to tell the scenarios' directories apart. */
  readonly name: string;
  /**
   * The E2E_ONLY values of this file's tests, one a test: the guest is built only if one of them runs.
   * Listed here because node:test runs the before hook as soon as it is registered, before the tests are.
   */
  readonly selectedBy: readonly string[];
  /** The report's file under .cache/e2e/. */
  readonly reportFile: string;
  /** Builds what the tests boot, in `work`; `say` reports what was built. */
  readonly build: (work: string, say: (line: string) => void) => G;
}

/** An assertion whose failure message carries the guest's console, where the reason usually is. */
export function check(vm: Vm, ok: boolean, what: string): void {
  assert.ok(ok, `${vm.name}: ${what}\n${vm.tail()}`);
}

export class Scenario<G> {
  readonly work: string;
  readonly #options: ScenarioOptions<G>;
  readonly #vms: Vm[] = [];
  readonly #lines: string[] = [];
  #guest: G | undefined;
  #missing: string | false = false;

  private constructor(options: ScenarioOptions<G>) {
    this.#options = options;
    this.work = fs.mkdtempSync(path.join(os.tmpdir(), `sysgenid-e2e-${options.name}-`));
  }

  /** The scenario of the calling test file, with the file's before and after hooks. */
  static setUp<G>(options: ScenarioOptions<G>): Scenario<G> {
    const scenario = new Scenario(options);
    before(() => scenario.#build());
    after(() => scenario.#finish());
    return scenario;
  }

  get guest(): G {
    if (this.#guest === undefined) throw new Error(`the ${this.#options.name} guest was not built`);
    return this.#guest;
  }

  /**
   * A test of this scenario. It runs unless E2E_ONLY names another than `id`; it is skipped when the guest
   * could not be built for want of a host tool (outside CI).
   */
  test(name: string, id: string, body: () => Promise<void>): void {
    if (!this.#options.selectedBy.includes(id)) throw new Error(`${id} is not in the scenario's selectedBy`);
    test(name, { skip: only !== undefined && only !== id ? `E2E_ONLY=${only}` : false }, async (t) => {
      if (this.#missing) return t.skip(this.#missing);
      await body();
    });
  }

  /** A report line: printed now, kept in the report file at the end. */
  readonly say = (line: string): void => {
    this.#lines.push(line);
    process.stdout.write(`# ${line}\n`);
  };

  /** Starts a VM with its sockets and console log in the work directory; it is killed after the tests. */
  async boot(options: Omit<VmOptions, 'runDir'>): Promise<Vm> {
    const vm = await Vm.start({ ...options, runDir: this.work });
    this.#vms.push(vm);
    return vm;
  }

  /** Stops `vm` and writes its whole state to `file` in the work directory (what clones start from). */
  async snapshot(vm: Vm, file: string): Promise<string> {
    const snap = path.join(this.work, file);
    const t0 = performance.now();
    await vm.snapshotTo(snap, 120_000);
    const seconds = (performance.now() - t0) / 1000;
    this.say(`snapshot: ${(fs.statSync(snap).size / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s`);
    return snap;
  }

  #build(): void {
    if (only !== undefined && !this.#options.selectedBy.includes(only)) return;
    try {
      this.#guest = this.#options.build(this.work, this.say);
    } catch (err) {
      if (err instanceof MissingToolError && !process.env.CI) {
        this.#missing = err.message;
        return;
      }
      throw err;
    }
  }

  async #finish(): Promise<void> {
    await Promise.all(this.#vms.map((vm) => vm.kill()));
    if (process.env.E2E_KEEP) this.say(`kept ${this.work}`);
    else fs.rmSync(this.work, { recursive: true, force: true });
    if (this.#lines.length) fs.writeFileSync(path.join(CACHE, this.#options.reportFile), this.#lines.join('\n') + '\n');
  }
}
