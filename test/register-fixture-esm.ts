// A program as an application writes it: named ES imports of node:crypto, taken before it knows of
// sysgenid. Started with `--import sysgenid/register` by test/register.test.ts (register-scenarios.cts).
import https from 'node:https';
import tls from 'node:tls';
import {
  createDiffieHellman,
  createECDH,
  generateKey,
  generateKeyPair,
  generateKeyPairSync,
  generateKeySync,
  getDiffieHellman,
  getRandomValues,
  randomBytes,
  randomFill,
  randomFillSync,
  randomInt,
  randomUUID,
  webcrypto,
} from 'node:crypto';
import scenarios from './register-scenarios.cjs';

await scenarios.runScenarios(
  {
    randomBytes,
    randomFill,
    randomFillSync,
    randomUUID,
    randomInt,
    getRandomValues,
    webcrypto,
    generateKey,
    generateKeySync,
    generateKeyPair,
    generateKeyPairSync,
    createECDH,
    createDiffieHellman,
    getDiffieHellman,
    tls,
    https,
  },
  process.argv[2],
);
