// Builds native/cyphonic_native.node with node-gyp (npm run build:native), offline against local Node headers.
// Uses $npm_config_nodedir if set, else the Node install prefix when it ships include/node (Debian/NodeSource, tarballs).
// `--install` is the package's npm install script: an installed tarball (`npm install -g ./cyphonic-*.tgz`) ships the
// compiled JavaScript in dist/ and the C sources here, and builds only this addon; in a source checkout (src/ and
// tsconfig.json present) it does nothing, since `npm run build` builds the addon there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv.includes('--install') && existsSync(join(here, '..', 'tsconfig.json')) && existsSync(join(here, '..', 'src'))) process.exit(0);
const env = { ...process.env };
if (!env.npm_config_nodedir) {
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
}

// node-gyp: the one npm puts on PATH for scripts, else the copy bundled with npm.
let gyp = ['node-gyp'];
const probe = spawnSync('node-gyp', ['--version'], { stdio: 'ignore' });
if (probe.error || probe.status !== 0) {
  const npmCli = resolve(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  const req = createRequire(join(npmCli, 'package.json'));
  gyp = [process.execPath, req.resolve('node-gyp/bin/node-gyp.js')];
}

const res = spawnSync(gyp[0], [...gyp.slice(1), 'rebuild', '--loglevel=warn', '--directory', here], { stdio: 'inherit', env });
if (res.error) throw res.error;
process.exit(res.status ?? 1);
