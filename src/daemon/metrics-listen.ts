// --metrics-listen's address, parsed apart from the metrics themselves so that reading the options never
// loads the metrics module (src/daemon/metrics.ts loads prom-client).

/** PORT, HOST:PORT or [V6]:PORT; a bare port listens on the loopback only. Undefined when malformed. */
export function parseListen(spec: string): { host: string; port: number } | undefined {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?([0-9]{1,5})$/.exec(spec);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  const host = m[1] === undefined ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}
