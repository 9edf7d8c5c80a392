// Seed workflow 1, the watchdog thread: block on the next generation, rebuild what a clone shares
// with its siblings, acknowledge, repeat.
//
//   SYSGENID_DIR=... node examples/watchdog.js [COUNT]
import { randomBytes } from 'node:crypto';
import { connect } from 'sysgenid';

const count = Number(process.argv[2] ?? Infinity);
const watcher = await connect({ name: 'watchdog example' });
let secret = randomBytes(16).toString('hex');
console.log(`ready at generation ${watcher.generation}, secret ${secret}`);

for (let handled = 0; handled < count; handled++) {
  const generation = await watcher.read(); // blocks until the generation changes
  secret = randomBytes(16).toString('hex'); // reseed_app_env()
  await watcher.ack(generation); // confirm we are done with this generation
  console.log(`generation ${generation}: new secret ${secret}`);
}
watcher.close();
