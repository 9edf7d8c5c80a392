// The CMD of `sysgenid snapshot -- CMD` inside the guest: it stands for "ask the hypervisor to take the
// snapshot and wait for its answer". It tells the test agent that the machine is quiesced (the agent
// tells the host, which takes the snapshot) and returns when the host says the snapshot is done. In a
// copy restored from that snapshot it is restored here, still waiting, and the copy's host answers.

import net from 'node:net';

const socket = net.createConnection(process.env.AGENT_SOCKET ?? '/run/e2e/agent.sock');
socket.setEncoding('utf8');
socket.on('connect', () => socket.write(`snapshot-now ${process.env.SYSGENID ?? ''}\n`));
let buf = '';
socket.on('data', (d: string) => {
  buf += d;
  if (buf.includes('done\n')) {
    socket.end();
    process.exit(0);
  }
});
socket.on('error', (err) => {
  console.error(`snapshot-cmd: ${err.message}`);
  process.exit(1);
});
