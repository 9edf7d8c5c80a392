// An application with its own sysgenid watcher, started with `--import sysgenid/register` beside a
// real daemon by test/register.test.ts. Its handler's first act is a crypto call; it reports what the
// register had done by then. On the line "state" from stdin it prints the register's state, with the
// acknowledgement as seen from inside each reseed (the reseed comes first, then the acknowledgement).
import crypto from 'node:crypto';
import readline from 'node:readline';
import { connect } from '../src/client/index.js';
import { onReseed, registerState } from '../src/client/register.js';

const ackedAtReseed: Array<number | null> = [];
onReseed(() => ackedAtReseed.push(registerState()?.acknowledged ?? null));
const watcher = await connect({ name: 'app' });
watcher.handle((generation) => {
  const bytes = crypto.randomBytes(8);
  const s = registerState();
  console.log(
    JSON.stringify({
      handler: generation,
      bytes: bytes.length,
      registerGeneration: s?.generation,
      reseeds: s?.reseeds,
    }),
  );
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'state') console.log(JSON.stringify({ state: registerState(), ackedAtReseed }));
  if (line === 'exit') process.exit(0);
});
console.log(JSON.stringify({ ready: true }));
