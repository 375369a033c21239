// Installing from a packed tarball, as docs/INSTALL.md does: `npm pack` ships the compiled JavaScript (dist/src), the
// C sources of the native addon, the systemd units and the docs — no TypeScript, tests or build output — and
// `npm install -g --prefix TMP` of it puts `cyphonic` on TMP/bin; the package's install script builds the addon from
// the shipped sources (node-gyp against the local Node headers) and `cyphonic --help` runs.
// Dependencies come from the npm cache that `npm ci` filled (--prefer-offline; the registry only if one is missing).
// The install runs with --ignore-scripts and then `npm rebuild cyphonic` runs our install script alone: better-sqlite3's
// own install script (a prebuilt download, else compiling SQLite from source: minutes on two cores) is not what this
// checks. No root, no namespaces; the tarball is packed from the already built dist/ (--ignore-scripts: no rebuild).

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from '../harness/cluster.js';
import { have } from '../harness/requires.js';

const run = promisify(execFile);
const skip = !have('npm') ? 'npm not found' : !existsSync(join(REPO, 'dist', 'src', 'cli', 'main.js')) ? 'not built (npm run build)' : false;

describe('npm pack + npm install -g: cyphonic on PATH with its native addon built at install', { skip, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-install-'));
  const prefix = join(dir, 'prefix');
  const npm = (args: string[], cwd = dir): Promise<{ stdout: string; stderr: string }> =>
    run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=warn'], { cwd, timeout: 150_000, maxBuffer: 64 << 20, env: { ...process.env, npm_config_update_notifier: 'false' } });
  after(() => rmSync(dir, { recursive: true, force: true }));

  let tgz = '';
  test('npm pack ships dist/src, bin, the addon sources, packaging and docs; no TypeScript, tests or build output', async () => {
    const t0 = Date.now();
    await npm(['pack', '--ignore-scripts', '--pack-destination', dir], REPO);
    tgz = join(dir, readdirSync(dir).find((f) => /^cyphonic-.*\.tgz$/.test(f))!);
    const files = (await run('tar', ['tzf', tgz], { maxBuffer: 16 << 20 })).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    console.log(`# packed ${files.length} files in ${Date.now() - t0} ms`);
    for (const f of ['bin/cyphonic.js', 'dist/src/cli/main.js', 'dist/src/node/dataplane/worker.js', 'native/binding.gyp', 'native/build.mjs', 'native/dataplane.c', 'packaging/systemd/cyphonic-cloud.service', 'packaging/systemd/cyphonic-node@.service', 'packaging/systemd/cyphonic-adapter@.service', 'docs/INSTALL.md', 'package.json']) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    for (const f of files) assert.doesNotMatch(f, /^(src|test|bench|scripts|dist\/test|dist\/bench|native\/build)\/|\.ts$(?<!\.d\.ts)/, `${f} is not shipped`);
  });

  test('npm install -g --prefix TMP: cyphonic on TMP/bin, the addon built from the shipped sources, --help runs', async () => {
    assert.ok(tgz, 'packed');
    const t0 = Date.now();
    await npm(['install', '-g', '--prefix', prefix, '--prefer-offline', '--ignore-scripts', tgz]);
    const pkg = join(prefix, 'lib', 'node_modules', 'cyphonic');
    const addon = join(pkg, 'native', 'build', 'Release', 'cyphonic_native.node');
    assert.ok(!existsSync(addon), 'not built yet');
    const t1 = Date.now();
    await npm(['rebuild', '-g', '--prefix', prefix, 'cyphonic', '--foreground-scripts']); // the package's install script
    assert.ok(existsSync(addon), 'the install script built the addon');
    console.log(`# npm install -g ${t1 - t0} ms (dependencies from the cache), addon build at install ${Date.now() - t1} ms`);
    const help = await run(join(prefix, 'bin', 'cyphonic'), ['--help'], { timeout: 30_000 });
    assert.match(help.stdout, /usage: cyphonic <command>/);
    assert.match(help.stdout, /node netcheck/);
    assert.match(help.stdout, /cloud general-node remove/);
    // The installed copy loads its own addon (not the source checkout's).
    const probe = `import(${JSON.stringify(join(pkg, 'dist', 'src', 'native', 'addon.js'))}).then((m) => { const a = m.loadNativeAddon(); console.log(a ? 'loaded' : m.nativeLoadError()); })`;
    const env = { ...process.env };
    delete env['CYPHONIC_NATIVE'];
    assert.equal((await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: dir, env })).stdout.trim(), 'loaded');
  });
});
