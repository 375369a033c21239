// Structured JSON-lines logger with a fixed field vocabulary (docs/LOGGING.md in ARCHITECTURE.md).
// One child logger per component; fields: node, vip4, vip6, path, peer, udpAddr, relay, code.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  /** @default 'info', or CYPHONIC_LOG_LEVEL */
  level?: Level;
  /** Where lines go. @default process.stderr */
  write?: (line: string) => void;
}

export function createLogger(base: Fields = {}, opts: LoggerOptions = {}): Logger {
  const envLevel = process.env['CYPHONIC_LOG_LEVEL'] as Level | undefined;
  const level: Level = opts.level ?? (envLevel && envLevel in ORDER ? envLevel : 'info');
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (lvl: Level, msg: string, fields?: Fields): void => {
    if (ORDER[lvl] < ORDER[level]) return;
    const rec: Fields = { t: new Date().toISOString(), level: lvl, msg, ...base, ...fields };
    write(JSON.stringify(rec, replacer) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...base, ...fields }, { level, write }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger({}, { write: () => {} });

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code };
  return value;
}
