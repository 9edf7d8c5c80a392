// The same program as CommonJS: require('node:crypto'), started with `-r sysgenid/register` (the
// bundled dist/register.cjs) by test/register.test.ts.
import crypto = require('node:crypto');
import https = require('node:https');
import tls = require('node:tls');
import scenarios = require('./register-scenarios.cjs');

const mods = { ...crypto, getRandomValues: crypto.getRandomValues, webcrypto: crypto.webcrypto, tls, https };
scenarios.runScenarios(mods, process.argv[2]).catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
