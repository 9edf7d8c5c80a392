// The wire contract, for code that speaks the protocol itself (other clients, tests, tools).
export * from './cycle-report.js';
export * from './errors.js';
export * from './framing.js';
export * from './messages.js';
export * from './runtime-dir.js';
export type * from './status.js';
export * from './page-format.js';
