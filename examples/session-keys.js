// A service whose identity must be unique per copy: its instance id, a session key and a UUIDv7
// sequence. Nothing to stop before a snapshot; after a restore it regenerates all three from
// SafeRandom (never from state the copy shares with the original) and only then acknowledges.
//
//   SYSGENID_DIR=... node examples/session-keys.js [COUNT]
import { Lifecycle, SafeRandom } from 'sysgenid';

const count = Number(process.argv[2] ?? Infinity);
const random = new SafeRandom();
const fresh = () => ({
  instanceId: random.randomUUID(),
  sessionKey: random.randomBytes(32).toString('hex'),
  firstId: random.uuidv7(),
});
let identity = fresh();
let restores = 0;

const lifecycle = await Lifecycle.open({ name: 'session-keys' });
lifecycle.register({
  name: 'identity',
  afterRestore(generation) {
    identity = fresh();
    console.log(
      `generation ${generation}: instance ${identity.instanceId}, key ${identity.sessionKey.slice(0, 16)}..., ` +
        `next id ${identity.firstId}`,
    );
    if (++restores >= count) setImmediate(() => lifecycle.close());
  },
});
lifecycle.on('error', (err) => console.error(`lifecycle: ${err.message}`));
console.log(`ready at generation ${lifecycle.generation}: instance ${identity.instanceId}`);
