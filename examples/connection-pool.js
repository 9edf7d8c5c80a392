// A connection pool that is safe to snapshot: on quiesce it closes every connection (a socket restored
// into a copy would be shared with the original's peer, or dead), and after the machine is un-quiesced
// it reconnects. Queries made while quiesced wait for the pool to come back instead of failing.
//
//   SYSGENID_DIR=... DB_SOCKET=/run/db.sock node examples/connection-pool.js
// Without DB_SOCKET it starts a small echo server of its own to stand for the database.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lifecycle } from 'sysgenid';

class Pool {
  #target;
  #size;
  #conns = [];
  #ready;
  #open = () => {};

  constructor(target, size) {
    this.#target = target;
    this.#size = size;
    this.#ready = Promise.resolve();
  }

  async connect() {
    this.#conns = await Promise.all(
      Array.from(
        { length: this.#size },
        () =>
          new Promise((resolve, reject) => {
            const s = net.createConnection(this.#target, () => resolve(s));
            s.once('error', reject);
          }),
      ),
    );
    this.#open();
  }

  /** Close every connection; later queries wait until connect() is called again. */
  async close() {
    this.#ready = new Promise((resolve) => (this.#open = resolve));
    await Promise.all(this.#conns.map((s) => new Promise((resolve) => s.end(resolve))));
    this.#conns = [];
  }

  async query(text) {
    await this.#ready;
    const s = this.#conns[Math.floor(Math.random() * this.#conns.length)];
    return new Promise((resolve) => {
      s.once('data', (d) => resolve(d.toString().trim()));
      s.write(`${text}\n`);
    });
  }

  get size() {
    return this.#conns.length;
  }
}

let target = process.env.DB_SOCKET;
if (!target) {
  target = path.join(os.tmpdir(), `sysgenid-pool-example-${process.pid}.sock`);
  net
    .createServer((s) => s.on('data', (d) => s.write(`echo ${d}`)))
    .listen(target)
    .unref();
  // process.exit() does not close the server, so its socket file would stay behind in the temp directory.
  const own = target;
  process.on('exit', () => fs.rmSync(own, { force: true }));
}
const pool = new Pool(target, 4);
await pool.connect();

const lifecycle = await Lifecycle.open({ name: 'connection-pool', priority: -10 });
lifecycle.register({
  name: 'pool',
  async beforeSnapshot() {
    await pool.close();
    console.log('quiesced: every connection closed');
  },
  async onResume({ generation, restored }) {
    await pool.connect();
    console.log(
      `resumed at generation ${generation} (${restored ? 'a restored copy' : 'the original'}): ${pool.size} ` +
        `connections`,
    );
  },
});
lifecycle.on('error', (err) => console.error(`lifecycle: ${err.message}`));
console.log(`ready at generation ${lifecycle.generation}: ${pool.size} connections, ${await pool.query('ping')}`);
process.on('SIGTERM', () => {
  lifecycle.close();
  pool.close().then(() => process.exit(0));
});
