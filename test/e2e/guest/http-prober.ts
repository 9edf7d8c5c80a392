// A client of the guest's HTTP service that never stops asking (every 50 ms): it records which session
// key every answer carried, as runs of equal answers, and how many attempts were refused. Restored
// with the guest, it shows whether any answer in a copy carried the source's key.

import fs from 'node:fs';
import http from 'node:http';

const report = process.env.REPORT ?? '/run/e2e/http-prober.json';
const port = Number(process.env.PORT ?? 8080);
interface Run {
  keyId: string;
  generation: number;
  instance: string;
  count: number;
  firstAtMs: number;
  lastAtMs: number;
}
const runs: Run[] = [];
let refused = 0;
let answers = 0;
let dirty = true;
const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;

function ask(): void {
  const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 2000 }, (res) => {
    let body = '';
    res
      .setEncoding('utf8')
      .on('data', (d: string) => (body += d))
      .on('end', () => {
        try {
          const r = JSON.parse(body) as { keyId: string; generation: number; instance: string };
          const last = runs.at(-1);
          const at = monoMs();
          if (last && last.keyId === r.keyId && last.generation === r.generation) {
            last.count++;
            last.lastAtMs = at;
          } else {
            runs.push({
              keyId: r.keyId,
              generation: r.generation,
              instance: r.instance,
              count: 1,
              firstAtMs: at,
              lastAtMs: at,
            });
          }
          answers++;
          dirty = true;
        } catch {
          // a half answer from a server being closed; the next attempt tells
        }
        setTimeout(ask, 50);
      });
  });
  req.on('error', () => {
    refused++;
    dirty = true;
    setTimeout(ask, 50);
  });
  req.on('timeout', () => req.destroy());
}

setInterval(() => {
  if (!dirty) return;
  dirty = false;
  fs.writeFileSync(`${report}.tmp`, JSON.stringify({ answers, refused, runs }));
  fs.renameSync(`${report}.tmp`, report);
}, 100);
ask();
