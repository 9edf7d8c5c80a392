// The sysgenid commands, one module each. This list is the registry: `sysgenid --help` lists the commands
// in this order, and src/cli/dispatch.ts finds a command, checks its options and runs it from here.
// A new command is one module in this folder and one line below.

import type { Command } from '../command.js';
import bump from './bump.js';
import criuAction from './criu-action.js';
import disconnect from './disconnect.js';
import exclude from './exclude.js';
import get from './get.js';
import quiesce from './quiesce.js';
import read from './read.js';
import ready from './ready.js';
import resume from './resume.js';
import snapshot from './snapshot.js';
import status from './status.js';
import wait from './wait.js';
import host from './host.js';
import watch from './watch.js';

export const COMMANDS: readonly Command[] = [
  status,
  get,
  read,
  watch,
  bump,
  wait,
  quiesce,
  resume,
  snapshot,
  ready,
  exclude,
  disconnect,
  criuAction,
  host,
];
