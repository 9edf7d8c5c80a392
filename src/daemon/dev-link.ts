// AWS-LC maps /dev/sysgenid (a build-time path) at its first random-number call. Linking it to the page
// gives it the counter, but a path that exists is never replaced: it may be a real device, or
// something an administrator put there on purpose.

import fs from 'node:fs';
import type { Logger } from './log.js';

export type LinkOutcome = 'created' | 'kept' | 'refused';

export function linkDevice(linkPath: string, page: string, log: Logger): LinkOutcome {
  try {
    fs.symlinkSync(page, linkPath);
    log.info(`linked ${linkPath} -> ${page}`);
    return 'created';
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== 'EEXIST') {
      log.warn(`cannot link ${linkPath} to the page: ${e.message}`);
      return 'refused';
    }
  }
  let target: string | undefined;
  try {
    target = fs.readlinkSync(linkPath);
  } catch {
    target = undefined;
  }
  if (target === page) {
    log.info(`${linkPath} already links to the page`);
    return 'kept';
  }
  log.warn(`${linkPath} already exists${target ? ` (a link to ${target})` : ''}; not replacing it`);
  return 'refused';
}
