// Test tool: logs in at the AS with the key and certificate chain in CRED_DIR (a node's state directory, or a
// general node's STATE/general/NAME) and prints {"nodeId", "expiresAt"} — the AS hands out a new Common Key, which
// replaces the one the directory's owner holds. The AS endpoints and the root CA come from TRUST_DIR, a node's
// state directory (the adapter's). adapter-relogin.test.ts uses it to make the cloud forget a general node's key.
//
// usage: node as-login.js CRED_DIR TRUST_DIR

import { login } from '../../../src/node/as-client.js';
import { StateDir } from '../../../src/node/state.js';

const [credDir, trustDir] = process.argv.slice(2);
if (!credDir || !trustDir) {
  process.stderr.write('usage: as-login CRED_DIR TRUST_DIR\n');
  process.exit(2);
}
const cred = new StateDir(credDir);
const trust = new StateDir(trustDir);
const res = await login({ endpoints: trust.readIdentity().as, rootPem: trust.readRoot(), certPem: cred.readCert(), chainPem: cred.readChain(), keyPem: cred.readKey() });
process.stdout.write(JSON.stringify({ nodeId: res.nodeId, expiresAt: Number(res.commonKeyExpiresAt) }) + '\n');
