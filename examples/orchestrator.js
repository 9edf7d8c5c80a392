// Seed workflow 4, the orchestrator: on a new generation, pause the service, acknowledge for itself,
// wait (at most 5 s) until every other tracked watcher has re-adjusted, then resume.
//
//   SYSGENID_DIR=... node examples/orchestrator.js [COUNT]
import { connect } from 'sysgenid';

const count = Number(process.argv[2] ?? Infinity);
const watcher = await connect({ name: 'orchestrator example' });
const pauseService = () => console.log('service paused');
const resumeService = () => console.log('service resumed');

console.log(`ready at generation ${watcher.generation}`);
for (let handled = 0; handled < count;) {
  const generation = await watcher.read();
  pauseService();
  await watcher.ack(generation);
  try {
    await watcher.waitForWatchers(5000);
    console.log(`generation ${generation}: every watcher re-adjusted`);
    handled++;
  } catch (err) {
    if (err.code === 'EINTR') {
      console.log(`generation ${generation}: a newer generation arrived; handling it`);
      continue;
    }
    if (err.code !== 'ETIME') throw err;
    console.log(`generation ${generation}: watchers still outdated after 5 s; resuming anyway`);
    handled++;
  }
  resumeService();
}
watcher.close();
