// Logs for the journal: a <N> priority prefix under systemd, and key=value context at the end of the
// lines one searches for (a bump's generation and source, a watcher's id, name and pid).

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createLogger, fields } from '../src/daemon/log.js';
import { RawClient, bump, startDaemon } from './helpers.js';

it('fields() writes logfmt-style context, quoting what needs it and leaving out what is unknown', () => {
  assert.equal(
    fields({ generation: 2, source: 'kmsg: VM fork (seq 3)', watcher: 3, name: 'web', pid: undefined, x: null }),
    '[generation=2 source="kmsg: VM fork (seq 3)" watcher=3 name=web]',
  );
  assert.equal(fields({ name: 'say "hi"' }), '[name="say \\"hi\\""]');
  assert.equal(fields({}), '[]');
});

it('under systemd (JOURNAL_STREAM) lines carry a priority prefix, and a bump line its context', async (t) => {
  const lines: string[] = [];
  const log = createLogger('info', (l) => lines.push(l), true);
  log.warn('w');
  log.info('i');
  assert.deepEqual(lines, ['<4>w\n', '<6>i\n']);

  const d = await startDaemon(t, { env: { JOURNAL_STREAM: '8:12345' } });
  const w = await RawClient.open(d.paths.watch);
  t.after(() => w.c.close());
  await bump(d.dir);
  await d.waitForLog(
    new RegExp(
      '^<6>generation 0 -> 1 \\(forced( by pid \\d+)?\\); 1 of 1 watchers outdated ' +
        '\\[generation=1 previous=0 source=("forced by pid \\d+"|forced) outdated=1\\]$',
      'm',
    ),
  );
});
