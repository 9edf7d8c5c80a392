// Seed workflow 2, the asynchronous event loop: the watcher is one more event source next to the
// application's own (here a timer standing in for request handling). handle() runs the handler on
// every new generation and acknowledges when it resolves.
//
//   SYSGENID_DIR=... node examples/event-loop.js [COUNT]
import { randomUUID } from 'node:crypto';
import { connect } from 'sysgenid';

const count = Number(process.argv[2] ?? Infinity);
const watcher = await connect({ name: 'event-loop example' });
let instanceId = randomUUID({ disableEntropyCache: true });
let handled = 0;

const work = setInterval(() => {
  // ... the application's own events are served here, in the same loop ...
}, 100);

watcher.handle(async (generation) => {
  instanceId = randomUUID({ disableEntropyCache: true });
  console.log(`generation ${generation}: instance id ${instanceId}`);
  if (++handled >= count) {
    // Acknowledged once this handler returns; close after that.
    setImmediate(() => {
      clearInterval(work);
      watcher.close();
    });
  }
});
watcher.on('error', (err) => console.error(`handler failed: ${err.message}`));
console.log(`ready at generation ${watcher.generation}, instance id ${instanceId}`);
