// The guest's application: it holds secrets (a session key, a UUIDv4, a run of UUIDv7) made from
// SafeRandom, regenerates them on every new generation and only then acknowledges it. It also keeps
// Node's own crypto.randomUUID() beside them, to show what a clone does to generators that cache state.
// Its current state is written to REPORT (atomically) for the test agent to read. With LIFECYCLE=1 it
// takes part in the lifecycle instead (the CRIU scenario): it notes when it was quiesced and resumed.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { Lifecycle, SafeRandom, connect } from '../../../src/client/index.js';

const report = process.env.REPORT ?? '/run/e2e/secret-app.json';
const random = new SafeRandom();
const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;
// Where this copy runs, as the outer pid namespace sees it: a CRIU copy keeps its own pid but not this.
const outerPid = (): number => Number(fs.readlinkSync('/proc/self'));

type State = Record<string, unknown>;

function regenerate(generation: number): State {
  return {
    generation,
    pid: process.pid,
    outerPid: outerPid(),
    sessionKey: random.randomBytes(32).toString('hex'),
    uuid: random.randomUUID(),
    uuidv7: [random.uuidv7(), random.uuidv7(), random.uuidv7()],
    nodeRandomUUID: crypto.randomUUID(),
    regeneratedAtMs: monoMs(),
    ackedAtMs: null,
  };
}

function publish(state: State): void {
  const file = report.replace('{pid}', String(state.outerPid));
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(state));
  fs.renameSync(`${file}.tmp`, file);
}

if (process.env.LIFECYCLE === '1') {
  const lifecycle = await Lifecycle.open({ name: process.env.APP_NAME ?? 'secret-app' });
  let state = regenerate(lifecycle.generation);
  publish(state);
  lifecycle.register({
    name: 'secrets',
    beforeSnapshot: () => publish((state = { ...state, quiescedAtMs: monoMs(), resumed: null })),
    afterRestore: (generation) => publish((state = { ...regenerate(generation), quiescedAtMs: state.quiescedAtMs })),
    onResume: ({ restored }) => publish((state = { ...state, resumed: { restored, atMs: monoMs() } })),
  });
  // Acknowledged by the library once afterRestore succeeded; noted here for the report.
  lifecycle.on('restored', (_g, failures) => {
    if (failures.length === 0) publish((state = { ...state, ackedAtMs: monoMs() }));
  });
} else {
  const watcher = await connect({ name: process.env.APP_NAME ?? 'secret-app' });
  publish(regenerate(watcher.generation));
  for await (const generation of watcher) {
    const state = regenerate(generation);
    publish(state);
    await watcher.ack(generation);
    // Published again with the acknowledgement's time, so the report shows regeneration came first.
    publish({ ...state, ackedAtMs: monoMs() });
  }
}
