// The error codes of the wire (docs/PROTOCOL.md, "Errors"). Defined in the core, whose state machines
// throw them, so that the core never imports the protocol; this module keeps the public path.
export { ERROR_CODES, type ErrorCode, SysgenidError, isErrorCode } from '../core/errors.js';
