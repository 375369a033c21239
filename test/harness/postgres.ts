// A throwaway PostgreSQL cluster for tests: initdb + pg_ctl (Debian's `postgresql` package) as the `postgres` user,
// in a fresh temporary directory, listening on one given address (loopback, or an address inside a network
// namespace with `netns`) at a random port, with password (SCRAM) authentication. stop() (also run at process exit)
// stops it with `pg_ctl -m immediate` and removes the directory. Nothing outside the temp directory is touched.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { verdict } from './requires.js';

/** Debian installs the server binaries per major version, outside PATH. */
function pgBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = execFileSync('ls', [root], { encoding: 'utf8' })
    .split('\n')
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  return null;
}

/** The `skip` option for tests that need a throwaway PostgreSQL (skipped locally, failed in CI when missing). */
export function postgresSkip(): string | false {
  if (process.getuid?.() !== 0) return verdict('needs root to run PostgreSQL as the postgres user');
  if (pgBinDir() === null) return verdict('needs the postgresql package (scripts/setup.sh)');
  try {
    execFileSync('id', ['-u', 'postgres'], { stdio: 'ignore' });
  } catch {
    return verdict('needs the postgres system user (the postgresql package)');
  }
  return verdict(null);
}

/** A free TCP port on loopback (the cluster binds it a moment later; start() retries on a clash). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface PostgresOptions {
  /** Address the server listens on. @default '127.0.0.1' */
  listen?: string;
  /** Network namespace to run the server in (its `listen` address must exist there). */
  netns?: string;
  /** Client networks (CIDR) allowed in besides loopback, with password authentication. */
  clients?: string[];
}

export class PostgresCluster {
  readonly password = randomBytes(12).toString('hex');
  readonly user = 'postgres';
  port = 0;
  private readonly dir: string;
  private readonly bin: string;
  private running = false;
  private dbCounter = 0;
  private readonly onExit = (): void => this.stopSync();

  private constructor(private readonly opts: PostgresOptions) {
    const bin = pgBinDir();
    if (bin === null) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
    this.bin = bin;
    this.dir = mkdtempSync(join(tmpdir(), 'cyphonic-pg-'));
  }

  get host(): string {
    return this.opts.listen ?? '127.0.0.1';
  }

  /** URL of database `db` (default: the maintenance database) with the right or a given password. */
  url(db = 'postgres', password = this.password): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `postgres://${this.user}:${encodeURIComponent(password)}@${host}:${this.port}/${db}`;
  }

  static async start(opts: PostgresOptions = {}): Promise<PostgresCluster> {
    const c = new PostgresCluster(opts);
    try {
      await c.boot();
    } catch (err) {
      c.stopSync();
      throw err;
    }
    return c;
  }

  private asPostgres(args: string[]): string {
    const prefix = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns] : [];
    const [cmd, ...rest] = [...prefix, 'runuser', '-u', 'postgres', '--', ...args];
    return execFileSync(cmd!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  }

  private async boot(): Promise<void> {
    const data = join(this.dir, 'data');
    const pwfile = join(this.dir, 'pw');
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(this.dir, uid, gid);
    chmodSync(this.dir, 0o700);
    writeFileSync(pwfile, `${this.password}\n`, { mode: 0o600 });
    chownSync(pwfile, uid, gid);
    this.asPostgres([join(this.bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C.UTF-8', '--no-instructions']);
    if (this.opts.clients?.length) {
      appendFileSync(join(data, 'pg_hba.conf'), this.opts.clients.map((c) => `host all all ${c} scram-sha-256\n`).join(''));
    }
    process.on('exit', this.onExit);
    for (let attempt = 0; ; attempt++) {
      this.port = await freePort();
      try {
        this.pgStart();
        return;
      } catch (err) {
        if (attempt >= 2) throw new Error(`pg_ctl start failed: ${(err as { stderr?: string }).stderr ?? String(err)}`);
      }
    }
  }

  private pgStart(): void {
    const o = `-p ${this.port} -c listen_addresses=${this.host} -k ${this.dir} -c max_connections=200`;
    this.asPostgres([join(this.bin, 'pg_ctl'), '-D', join(this.dir, 'data'), '-l', join(this.dir, 'log'), '-o', o, '-w', '-t', '30', 'start']);
    this.running = true;
  }

  /** Stops the server (fast shutdown: connections are cut), keeping its data, to simulate an outage. */
  pause(): void {
    if (!this.running) return;
    this.asPostgres([join(this.bin, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'fast', '-w', 'stop']);
    this.running = false;
  }

  /** Starts it again after pause(), on the same address and port. */
  resume(): void {
    if (!this.running) this.pgStart();
  }

  /** Creates an empty database and returns its URL. */
  async createDatabase(name = `t${++this.dbCounter}_${randomBytes(3).toString('hex')}`): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name}"`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** Stops the server (immediate shutdown) and removes its directory. Idempotent. */
  async stop(): Promise<void> {
    this.stopSync();
  }

  private stopSync(): void {
    process.removeListener('exit', this.onExit);
    if (this.running) {
      this.running = false;
      try {
        this.asPostgres([join(this.bin, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
