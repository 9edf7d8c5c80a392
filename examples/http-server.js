// An HTTP service that is safe to snapshot: on quiesce it stops accepting and drains the requests in
// flight; after a restore it regenerates its session key and instance id (before it acknowledges the
// new generation); on resume it listens again. A copy restored from a snapshot therefore never answers
// with the original's key: it re-opens only after the key was regenerated.
//
//   SYSGENID_DIR=... PORT=8080 node examples/http-server.js
//   curl localhost:8080/        -> {"instance":"...","keyId":"...","generation":0}
//   sysgenid snapshot -- <take the snapshot>
import http from 'node:http';
import { createHash } from 'node:crypto';
import { Lifecycle, SafeRandom } from 'sysgenid';

const port = Number(process.env.PORT ?? 8080);
const random = new SafeRandom();
let sessionKey = random.randomBytes(32);
let instanceId = random.randomUUID();
const keyId = () => createHash('sha256').update(sessionKey).digest('hex').slice(0, 16);

const server = http.createServer((req, res) => {
  // The key is used here: a real service would sign cookies or tokens with it.
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ instance: instanceId, keyId: keyId(), generation: lifecycle.generation }) + '\n');
});
// Keep-alive connections would outlive a close(); they are ended when the service quiesces.
server.keepAliveTimeout = 1000;

const listen = () =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve();
    });
  });

const lifecycle = await Lifecycle.open({ name: `http-server :${port}` });
lifecycle.register({
  name: 'http',
  async beforeSnapshot() {
    // close() stops accepting and calls back when the requests in flight are answered.
    const drained = new Promise((resolve) => server.close(resolve));
    server.closeIdleConnections();
    await drained;
    console.log('quiesced: not accepting, drained');
  },
  afterRestore(generation) {
    sessionKey = random.randomBytes(32);
    instanceId = random.randomUUID();
    console.log(`generation ${generation}: new session key ${keyId()}, instance ${instanceId}`);
  },
  async onResume({ generation, restored }) {
    await listen();
    console.log(
      `resumed at generation ${generation} (${restored ? 'a restored copy' : 'the original'}): listening on ${port}`,
    );
  },
});
lifecycle.on('error', (err) => console.error(`lifecycle: ${err.message}`));

await listen();
console.log(`ready at generation ${lifecycle.generation}: listening on ${port}, session key ${keyId()}`);
process.on('SIGTERM', () => {
  lifecycle.close();
  server.close();
  server.closeAllConnections();
});
