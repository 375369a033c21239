// Test tool: logs in at the AS with the credentials of a state directory (a node's, or a general node's
// STATE/general/NAME) and prints {"nodeId", "expiresAt"} — the AS hands out a new Common Key, which replaces the one
// the directory's owner holds. adapter-relogin.test.ts uses it to make the cloud forget a general node's key.
//
// usage: node as-login.js STATE_DIR

import { login } from '../../../src/node/as-client.js';
import { StateDir } from '../../../src/node/state.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: as-login STATE_DIR\n');
  process.exit(2);
}
const state = new StateDir(dir);
const id = state.readIdentity();
const res = await login({ endpoints: id.as, rootPem: state.readRoot(), certPem: state.readCert(), chainPem: state.readChain(), keyPem: state.readKey() });
process.stdout.write(JSON.stringify({ nodeId: res.nodeId, expiresAt: Number(res.commonKeyExpiresAt) }) + '\n');
