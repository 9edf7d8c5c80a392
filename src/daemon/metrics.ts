// Opt-in Prometheus metrics (--metrics-listen, --metrics-file), with the probes Kubernetes needs on the
// same listener: /readyz (what `sysgenid ready` means, or for one named service) and /healthz. The
// exposition format is prom-client's. This module is loaded only when a metrics option is given
// (src/daemon/main.ts loads it from dist/src, outside the bundle), so that a daemon without metrics
// starts as before.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type * as PromClientModule from 'prom-client';
import type { Counter, Histogram, Registry } from 'prom-client';
import type { DaemonStatus } from '../protocol/status.js';
import type { Logger } from './log.js';
import { VERSION } from '../version.js';

/** What the metrics read from the daemon: its STATUS document, with the watcher list. */
export interface MetricsSource {
  status(withList: boolean): DaemonStatus;
}

export interface MetricsOptions {
  /** host:port for HTTP (/metrics, /readyz, /healthz); undefined: no listener. */
  readonly listen: { readonly host: string; readonly port: number } | undefined;
  /** A node_exporter textfile, rewritten atomically; undefined: none. */
  readonly file: string | undefined;
  /** How often the textfile is rewritten besides after every bump and every settle. */
  readonly fileIntervalMs: number;
}

type PromClient = typeof PromClientModule;

const LIFECYCLE_STATES = ['running', 'quiescing', 'quiesced', 'adjusting', 'unquiescing'] as const;
/** From a bump to every tracked watcher acknowledged: milliseconds when all is well, the adjust budget when not. */
const SETTLE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The bounded label of a bump's source: "kmsg: VM fork (seq 342)" and "forced by pid 12" are kmsg and forced. */
export function sourceLabel(source: string): string {
  const m = /^[a-z][a-z0-9_-]*/i.exec(source);
  return m ? m[0].toLowerCase() : 'other';
}

export class Metrics {
  readonly #source: MetricsSource;
  readonly #log: Logger;
  readonly #opts: MetricsOptions;
  readonly #registry: Registry;
  readonly #bumps: Counter<'source'>;
  readonly #settle: Histogram;
  #server: http.Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The bump whose acknowledgements are awaited: its generation and when its page was written. */
  #pending: { generation: number; at: bigint } | undefined;
  #writing = false;
  #writeAgain = false;

  private constructor(prom: PromClient, source: MetricsSource, log: Logger, opts: MetricsOptions) {
    this.#source = source;
    this.#log = log;
    this.#opts = opts;
    const registry = new prom.Registry();
    this.#registry = registry;
    const status = (): DaemonStatus => source.status(false);
    // A gauge read from STATUS at each scrape: one value, or one per label set.
    const fromStatus = (
      name: string,
      help: string,
      read: (s: DaemonStatus) => number | Array<[Record<string, string>, number]>,
      labelNames: string[] = [],
    ): void => {
      new prom.Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          const value = read(status());
          if (typeof value === 'number') return this.set(value);
          // Label sets that are gone (a build label that changed) must not linger.
          this.reset();
          for (const [labels, v] of value) this.set(labels, v);
        },
      });
    };
    fromStatus('sysgenid_generation', 'The current system generation.', (s) => s.generation);
    this.#bumps = new prom.Counter({
      name: 'sysgenid_bumps_total',
      help: 'New generations since the daemon started, by what caused them.',
      labelNames: ['source'],
      registers: [registry],
    });
    fromStatus(
      'sysgenid_watchers',
      'Connected watchers, tracked (waited for) or untracked.',
      (s) => [
        [{ tracking: 'tracked' }, s.tracked],
        [{ tracking: 'untracked' }, s.watchers - s.tracked],
      ],
      ['tracking'],
    );
    fromStatus(
      'sysgenid_watchers_outdated',
      'Tracked watchers that have not acknowledged the current generation.',
      (s) => s.outdated,
    );
    this.#settle = new prom.Histogram({
      name: 'sysgenid_restore_acknowledged_seconds',
      help: 'From a new generation written to the page until every tracked watcher acknowledged it.',
      buckets: SETTLE_BUCKETS,
      registers: [registry],
    });
    fromStatus(
      'sysgenid_lifecycle_state',
      'The lifecycle state: 1 for the current one, 0 for the others.',
      (s) => LIFECYCLE_STATES.map((state) => [{ state }, state === s.lifecycle.state ? 1 : 0]),
      ['state'],
    );
    fromStatus('sysgenid_ready', 'Lifecycle running and no tracked watcher outdated (sysgenid ready).', (s) =>
      s.lifecycle.ready ? 1 : 0,
    );
    fromStatus(
      'sysgenid_backend_up',
      'Whether each restore backend is live (1) or off (0).',
      (s) => s.backends.map((b) => [{ backend: b.name }, b.live ? 1 : 0]),
      ['backend'],
    );
    fromStatus('sysgenid_connections', 'Open connections on both sockets.', (s) => s.connections);
    fromStatus(
      'sysgenid_build_info',
      'Always 1; the labels say which daemon this is.',
      (s) => [[{ version: VERSION, node: process.version, addon: s.native.startsWith('loaded') ? 'yes' : 'no' }, 1]],
      ['version', 'node', 'addon'],
    );
  }

  /** Loads prom-client and starts what the options ask for. */
  static async start(source: MetricsSource, log: Logger, opts: MetricsOptions): Promise<Metrics> {
    // prom-client is CommonJS: its exports arrive as the default export (ESM) or as the module (the bundle).
    const loaded = (await import('prom-client')) as unknown as { default?: PromClient } & PromClient;
    const metrics = new Metrics(loaded.default ?? loaded, source, log, opts);
    if (opts.listen) await metrics.#listen(opts.listen);
    if (opts.file) {
      await metrics.writeFile();
      metrics.#timer = setInterval(() => void metrics.writeFile(), opts.fileIntervalMs);
      metrics.#timer.unref();
    }
    return metrics;
  }

  /** The HTTP address actually bound (port 0 picks one), for logs and tests. */
  get address(): { host: string; port: number } | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  /** A new generation is on the page (call right after the write). */
  bumped(source: string, generation: number): void {
    this.#bumps.inc({ source: sourceLabel(source) });
    this.#pending = { generation, at: process.hrtime.bigint() };
    this.#changed();
  }

  /** An acknowledgement or a disconnection: observe the settle time when nobody is outdated any more. */
  acknowledged(outdated: number, generation: number): void {
    const p = this.#pending;
    if (!p || outdated > 0) return;
    this.#pending = undefined;
    // A newer bump restarted the clock: the older one never settled on its own and is not counted.
    if (p.generation !== generation) return;
    this.#settle.observe(Number(process.hrtime.bigint() - p.at) / 1e9);
    this.#changed();
  }

  async exposition(): Promise<{ type: string; text: string }> {
    return { type: this.#registry.contentType, text: await this.#registry.metrics() };
  }

  /** Writes the textfile whole under a temporary name and renames it: node_exporter never reads half of it. */
  async writeFile(): Promise<void> {
    const file = this.#opts.file;
    if (!file) return;
    if (this.#writing) {
      this.#writeAgain = true;
      return;
    }
    this.#writing = true;
    try {
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
      await fs.promises.writeFile(tmp, (await this.exposition()).text, { mode: 0o644 });
      await fs.promises.rename(tmp, file);
    } catch (err) {
      this.#log.warn(`metrics: cannot write ${file}: ${(err as Error).message}`);
    } finally {
      this.#writing = false;
    }
    if (this.#writeAgain) {
      this.#writeAgain = false;
      await this.writeFile();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  #changed(): void {
    if (this.#opts.file) void this.writeFile();
  }

  #listen(where: { host: string; port: number }): Promise<void> {
    const server = http.createServer((req, res) => void this.#serve(req, res));
    // Probes and scrapes are short; a client that opens and idles must not hold a socket for long.
    server.headersTimeout = 5000;
    server.requestTimeout = 10000;
    server.keepAliveTimeout = 5000;
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: where.host, port: where.port }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.#log.error(`metrics listener: ${err.message}`));
        resolve();
      });
    });
  }

  async #serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const reply = (code: number, text: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'only GET and HEAD\n');
      return;
    }
    try {
      switch (url.pathname) {
        case '/metrics': {
          const { type, text } = await this.exposition();
          reply(200, text, type);
          return;
        }
        case '/healthz':
          // Answering at all shows the event loop turns; the generation shows the state is readable.
          reply(200, `ok: generation ${this.#source.status(false).generation}\n`);
          return;
        case '/readyz': {
          const { ready, why } = readiness(this.#source.status(true), url.searchParams.get('service'));
          reply(ready ? 200 : 503, ready ? `ready: ${why}\n` : `not ready: ${why}\n`);
          return;
        }
        default:
          reply(404, 'not found: /metrics, /readyz[?service=NAME], /healthz\n');
      }
    } catch (err) {
      reply(500, `${(err as Error).message}\n`);
    }
  }
}

/**
 * What `sysgenid ready` means, for the whole machine or for the watchers of one named service: the
 * lifecycle is running and none of them is outdated; a named service must also be connected, and is
 * ready while the machine re-adjusts once its own watchers have acknowledged.
 */
export function readiness(s: DaemonStatus, service: string | null): { ready: boolean; why: string } {
  const list = s.list ?? [];
  // Re-adjusting after a restore, a service that already acknowledged may take traffic again; while
  // quiescing, quiesced or resuming nobody may.
  const state = s.lifecycle.state;
  if (state !== 'running' && !(service !== null && state === 'adjusting'))
    return { ready: false, why: `lifecycle ${state}` };
  if (service === null) {
    const late = list.filter((w) => w.tracked && w.outdated);
    if (late.length > 0 || !s.lifecycle.ready) {
      return {
        ready: false,
        why: `${late.length} watcher(s) outdated: ${late
          .slice(0, 5)
          .map((w) => w.name ?? `#${w.id}`)
          .join(', ')}`,
      };
    }
    return { ready: true, why: `generation ${s.generation}, ${s.watchers} watcher(s), none outdated` };
  }
  const mine = list.filter((w) => w.name === service);
  if (mine.length === 0) return { ready: false, why: `no watcher named ${JSON.stringify(service)} is connected` };
  const late = mine.filter((w) => w.outdated);
  if (late.length > 0) return { ready: false, why: `${late.length} of ${mine.length} ${service} watcher(s) outdated` };
  return { ready: true, why: `generation ${s.generation}, ${mine.length} ${service} watcher(s), none outdated` };
}
