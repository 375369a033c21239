// The REST API under /api/v1/ and /metrics, and the web console's static files at / (src/cloud/console/static/), served by
// `cloud start` on --console ADDR:PORT: plain HTTP on loopback, HTTPS with the cloud's own TLS certificate when bound
// beyond it. node:http/https only, no framework.
//
// Every route but the OpenAPI document wants `Authorization: Bearer TOKEN` (DIR/admin-token), compared in constant
// time (admin-token.ts). A client address with AUTH_FAILURES.max wrong tokens within AUTH_FAILURES.windowMs gets 429
// ERR_RATE_LIMITED for every authenticated route, right token or not, until the window ends. Bodies are JSON of at
// most MAX_BODY bytes; a request that is refused changes nothing. Errors are {"error": {"code", "message"}} with a
// stable code (ApiError codes below, or the CyphonicError code of the operation that refused).
//
// The console is a fixed set of files read at start (nothing else on disk is reachable); every answer carries a
// Content-Security-Policy that allows scripts, styles and fetches from this origin only (no inline script or style).

import http from 'node:http';
import https from 'node:https';
import { isIP, type AddressInfo } from 'node:net';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, CyphonicError, describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { AdminTokenCheck } from './admin-token.js';

/** Largest request body taken (the policy is the largest; MAX_POLICY_BYTES is larger but no sane policy is). */
export const MAX_BODY = 256 * 1024;
/** Tunable: a request must arrive whole within this time. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Tunable: wrong bearer tokens one client address may send per window before it is refused with 429. */
export const AUTH_FAILURES = { max: 10, windowMs: 60_000 } as const;
/** Tunable: client addresses whose failures are tracked at once (the oldest window is forgotten first). */
const AUTH_FAILURE_ADDRESSES = 10_000;

/** The console's policy: this origin only; images also from blob: (the token's QR code); no framing, no inline code. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** JSON and text answers: nothing may run or load in their context. */
const API_CSP = "default-src 'none'; frame-ancestors 'none'";

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** src/cloud/console/static/ (the compiled server runs from dist/src/cloud/api/; a copy beside it wins). */
export function defaultConsoleDir(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  return [join(here, '..', 'console', 'static'), join(here, '..', '..', '..', '..', 'src', 'cloud', 'console', 'static')].find((d) => existsSync(join(d, 'index.html'))) ?? null;
}

/** The console's files by URL path ('/' is index.html, the rest '/console/NAME'), read once. */
function loadConsole(dir: string | null): Map<string, { type: string; data: Buffer }> {
  const files = new Map<string, { type: string; data: Buffer }>();
  if (!dir) return files;
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (!type || !/^[a-z0-9-]+\.[a-z]+$/.test(name)) continue;
    const data = readFileSync(join(dir, name));
    files.set(`/console/${name}`, { type, data });
    if (name === 'index.html') files.set('/', { type, data });
  }
  return files;
}

/** Wrong-token counts per client address within fixed windows (bounded). */
export class AuthFailures {
  private readonly by = new Map<string, { since: number; count: number }>();
  constructor(
    private readonly limit: { max: number; windowMs: number } = AUTH_FAILURES,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `addr` may try again, or 0 if it is not limited. */
  blockedFor(addr: string): number {
    const e = this.by.get(addr);
    if (!e) return 0;
    const left = e.since + this.limit.windowMs - this.now();
    if (left <= 0) {
      this.by.delete(addr);
      return 0;
    }
    return e.count >= this.limit.max ? left : 0;
  }

  fail(addr: string): void {
    const t = this.now();
    let e = this.by.get(addr);
    if (e && t - e.since >= this.limit.windowMs) {
      this.by.delete(addr);
      e = undefined;
    }
    if (!e) {
      if (this.by.size >= AUTH_FAILURE_ADDRESSES) this.by.delete(this.by.keys().next().value as string);
      this.by.set(addr, (e = { since: t, count: 0 }));
    }
    e.count++;
  }

  get size(): number {
    return this.by.size;
  }
}

/** The client's address for the failure count: IPv4-mapped IPv6 as IPv4, IPv6 by its /64 (one host holds a /64). */
export function clientKey(address: string | undefined): string {
  const a = (address ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (isIP(a) !== 6) return a;
  const [head, tail = ''] = a.split('::') as [string, string?];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

export class ApiError extends CyphonicError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

export interface ApiRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Path parameters of the matched route. */
  params: Record<string, string>;
  /** The parsed JSON body (undefined when there was none). */
  body: unknown;
}

export interface ApiResponse {
  status?: number;
  /** JSON-encoded unless `text` is set. */
  body?: unknown;
  text?: { contentType: string; data: string };
}

export interface ApiRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** e.g. '/api/v1/nodes/:name/revoke' */
  path: string;
  /** No bearer token needed (the OpenAPI document). */
  public?: boolean;
  handle(req: ApiRequest): Promise<ApiResponse> | ApiResponse;
}

/** Status for the codes operations raise (ConfigError, StoreError, PolicyError); anything else is a 500. */
const STATUS_OF: Record<string, number> = {
  ERR_UNKNOWN_NODE: 404,
  ERR_NAME_TAKEN: 409,
  ERR_MAC_TAKEN: 409,
  ERR_STORE_DUPLICATE: 409,
  ERR_POOL_EXHAUSTED: 409,
  ERR_BAD_MAC: 400,
  ERR_BAD_TAG: 400,
  ERR_BAD_ADAPTER: 400,
  ERR_NAME: 400,
  ERR_POLICY: 400,
  ERR_CONFIG: 400,
};

function match(pattern: string, path: string): Record<string, string> | null {
  const a = pattern.split('/');
  const b = path.split('/');
  if (a.length !== b.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.startsWith(':')) {
      let v: string;
      try {
        v = decodeURIComponent(b[i]!);
      } catch {
        return null;
      }
      if (!v) return null;
      params[a[i]!.slice(1)] = v;
    } else if (a[i] !== b[i]) return null;
  }
  return params;
}

export interface ApiServerInit {
  host: string;
  port: number;
  /** DIR: the admin token lives in DIR/admin-token. */
  dir: string;
  /** Certificate chain and key for HTTPS; used when `host` is not a loopback address. */
  tls: { certPem: string; keyPem: string };
  routes: ApiRoute[];
  logger: Logger;
  /** Told each answered request's route (or 'none'), status and duration in seconds (the metrics histogram). */
  observe?: (route: string, status: number, seconds: number) => void;
  /** The console's static files (null: no console, only the API). @default defaultConsoleDir() */
  consoleDir?: string | null;
  /** Wrong tokens per client address and window before 429. @default AUTH_FAILURES */
  authFailures?: { max: number; windowMs: number };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class ApiServer {
  private server: http.Server | null = null;
  private readonly auth: AdminTokenCheck;
  readonly failures: AuthFailures;
  private readonly console: Map<string, { type: string; data: Buffer }>;
  /** Requests served and refused, by outcome (`cloud stats`-style). */
  readonly counters = new Map<string, number>();

  constructor(private readonly init: ApiServerInit) {
    this.auth = new AdminTokenCheck(init.dir);
    this.failures = new AuthFailures(init.authFailures ?? AUTH_FAILURES);
    this.console = loadConsole(init.consoleDir === undefined ? defaultConsoleDir() : init.consoleDir);
  }

  get tls(): boolean {
    return !isLoopback(this.init.host);
  }

  private count(k: string): void {
    this.counters.set(k, (this.counters.get(k) ?? 0) + 1);
  }

  async start(): Promise<{ port: number; url: string }> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.serve(req, res);
    const server = this.tls ? https.createServer({ cert: this.init.tls.certPem, key: this.init.tls.keyPem, minVersion: 'TLSv1.2' }, handler) : http.createServer(handler);
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.headersTimeout = REQUEST_TIMEOUT_MS;
    server.maxHeadersCount = 64;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.init.port, this.init.host, () => resolve());
    });
    this.server = server;
    const port = (server.address() as AddressInfo).port;
    const host = this.init.host.includes(':') ? `[${this.init.host}]` : this.init.host;
    return { port, url: `${this.tls ? 'https' : 'http'}://${host}:${port}` };
  }

  stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private send(res: http.ServerResponse, status: number, r: ApiResponse): void {
    if (r.text) {
      res.writeHead(status, { 'content-type': r.text.contentType, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': API_CSP });
      res.end(r.text.data);
      return;
    }
    const body = JSON.stringify(r.body ?? {}, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n';
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': API_CSP });
    res.end(body);
  }

  private fail(res: http.ServerResponse, status: number, code: string, message: string, extra: Record<string, string> = {}): void {
    this.count(`refused.${status}`);
    for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
    this.send(res, status, { body: { error: { code, message } } });
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = process.hrtime.bigint();
    let route = 'none';
    res.on('finish', () => this.init.observe?.(route, res.statusCode, Number(process.hrtime.bigint() - t0) / 1e9));
    try {
      const method = req.method ?? 'GET';
      const path = (req.url ?? '/').split('?')[0]!;
      const file = this.console.get(path);
      if (file && (method === 'GET' || method === 'HEAD')) {
        req.resume();
        route = 'console';
        this.count('ok.console');
        res.writeHead(200, {
          'content-type': file.type,
          'content-length': String(file.data.length),
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
          'content-security-policy': CONSOLE_CSP,
          'x-frame-options': 'DENY',
          'referrer-policy': 'no-referrer',
          'cross-origin-opener-policy': 'same-origin',
          'cross-origin-resource-policy': 'same-origin',
        });
        res.end(method === 'HEAD' ? undefined : file.data);
        return;
      }
      const candidates = this.init.routes.map((r) => ({ r, params: match(r.path, path) })).filter((c) => c.params);
      if (candidates.length === 0) {
        req.resume();
        return this.fail(res, 404, 'ERR_NOT_FOUND', `no route ${path}`);
      }
      const hit = candidates.find((c) => c.r.method === method);
      if (!hit) {
        req.resume();
        return this.fail(res, 405, 'ERR_METHOD', `${method} not allowed on ${path}`, { allow: candidates.map((c) => c.r.method).join(', ') });
      }
      route = `${hit.r.method} ${hit.r.path}`;
      if (!hit.r.public) {
        const client = clientKey(req.socket.remoteAddress);
        const wait = this.failures.blockedFor(client);
        if (wait > 0) {
          req.resume();
          return this.fail(res, 429, 'ERR_RATE_LIMITED', 'too many wrong bearer tokens from this address: try again later', { 'retry-after': String(Math.ceil(wait / 1000)) });
        }
        const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(req.headers.authorization ?? '');
        if (!m || !this.auth.check(m[1]!)) {
          this.failures.fail(client);
          req.resume();
          return this.fail(res, 401, 'ERR_UNAUTHORIZED', 'missing or wrong bearer token (DIR/admin-token)', { 'www-authenticate': 'Bearer realm="cyphonic"' });
        }
      }
      let body: unknown = undefined;
      if (method === 'POST' || method === 'PUT') {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        const declared = Number(req.headers['content-length'] ?? NaN);
        if (declared > MAX_BODY) {
          req.resume();
          return this.fail(res, 413, 'ERR_BODY_TOO_LARGE', `request body larger than ${MAX_BODY} bytes`, { connection: 'close' });
        }
        const raw = await readBody(req, MAX_BODY);
        if (raw === null) return this.fail(res, 413, 'ERR_BODY_TOO_LARGE', `request body larger than ${MAX_BODY} bytes`, { connection: 'close' });
        if (raw.length > 0) {
          if (type !== 'application/json') return this.fail(res, 415, 'ERR_CONTENT_TYPE', 'send the body as application/json');
          try {
            body = JSON.parse(raw.toString('utf8'));
          } catch (err) {
            return this.fail(res, 400, 'ERR_BAD_JSON', `body is not JSON: ${(err as Error).message}`);
          }
        }
      } else req.resume();
      const out = await hit.r.handle({ method, path, params: hit.params!, body });
      this.count(`ok.${hit.r.method} ${hit.r.path}`);
      this.send(res, out.status ?? 200, out);
    } catch (err) {
      if (err instanceof ApiError) return this.fail(res, err.status, err.code, err.message);
      if (err instanceof CyphonicError && STATUS_OF[err.code]) return this.fail(res, STATUS_OF[err.code]!, err.code, err.message);
      this.init.logger.warn('API request failed', { err: describeError(err) });
      if (!res.headersSent) this.fail(res, 500, err instanceof CyphonicError ? err.code : 'ERR_INTERNAL', err instanceof CyphonicError ? err.message : 'internal error');
    }
  }
}

/** The body, or null when it exceeds `max` bytes (the rest is discarded, the connection closed after the answer). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/** 'ADDR:PORT' ('127.0.0.1:4580', '[::]:4580', '0.0.0.0:0') → host and port; ConfigError naming `flag` otherwise. */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)|(localhost)):([0-9]{1,5})$/.exec(text);
  const host = m ? (m[1] ?? m[2] ?? m[3])! : '';
  const port = m ? Number(m[4]) : NaN;
  if (!m || port > 65535 || (host !== 'localhost' && isIP(host) === 0)) throw new ConfigError(`${flag}: ${text} is not ADDR:PORT (e.g. 127.0.0.1:4580, [::1]:4580)`, 'ERR_USAGE');
  return { host, port };
}
