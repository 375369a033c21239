// Local control API: JSON over HTTP on a Unix socket inside a daemon's directory (mode 0600).
// Daemons serve a few read-only routes (status, metrics); the CLI is the client. Errors carry a code, never a stack.

import http from 'node:http';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { CyphonicError, describeError } from './errors.js';

export type Route = () => Promise<unknown> | unknown;

export interface ControlServer {
  close(): Promise<void>;
}

export async function serveControl(socketPath: string, routes: Record<string, Route>): Promise<ControlServer> {
  if (existsSync(socketPath)) unlinkSync(socketPath); // left by a killed daemon
  const server = http.createServer((req, res) => {
    const route = req.method === 'GET' ? routes[req.url ?? ''] : undefined;
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
    };
    if (!route) return send(404, { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url}` });
    Promise.resolve()
      .then(route)
      .then(
        (body) => send(200, body),
        (err: unknown) => send(500, { code: err instanceof CyphonicError ? err.code : 'ERR_INTERNAL', message: describeError(err) }),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** GET `path` from the daemon at `socketPath`; rejects with code ERR_NOT_RUNNING when nobody listens. */
export function controlGet(socketPath: string, path: string, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, timeout: timeoutMs, agent: false }, (res) => { // no pooled socket to a daemon that may have stopped
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          if (res.statusCode === 200) resolve(body);
          else {
            const b = body as { code?: string; message?: string };
            reject(new CyphonicError(b.code ?? 'ERR_CONTROL', b.message ?? `HTTP ${res.statusCode}`));
          }
        } catch (err) {
          reject(new CyphonicError('ERR_CONTROL', `bad reply from daemon: ${(err as Error).message}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new CyphonicError('ERR_NOT_RUNNING', 'daemon is not running'));
      else reject(new CyphonicError('ERR_CONTROL', err.message));
    });
  });
}
