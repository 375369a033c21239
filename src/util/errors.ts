// Error types with stable codes, shared by every component.
// Control APIs and CLI print `code: message`, never a stack; codes are listed in docs/PROTOCOL.md.

/** Base class: every error cyphonic raises on purpose carries a stable `code`. */
export class CyphonicError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Malformed or hostile bytes on any wire format (signaling, data, DNS, DHCP, config…). */
export class DecodeError extends CyphonicError {
  constructor(message: string, code = 'ERR_DECODE') {
    super(code, message);
  }
}

/** Authentication or integrity failure: bad tag, bad signature, wrong key, replay. */
export class CryptoError extends CyphonicError {
  constructor(message: string, code = 'ERR_CRYPTO') {
    super(code, message);
  }
}

/** A certificate chain that does not verify: foreign CA, expired, revoked, malformed. */
export class CertificateError extends CyphonicError {
  constructor(message: string, code = 'ERR_CERT') {
    super(code, message);
  }
}

/** Configuration or command-line input that is invalid. */
export class ConfigError extends CyphonicError {
  constructor(message: string, code = 'ERR_CONFIG') {
    super(code, message);
  }
}

/** A request refused by a service (AS/NMS/TRS) with a protocol status code. */
export class RequestError extends CyphonicError {
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(code, message);
    this.status = status;
  }
}

/** Short, safe description of any thrown value: `code: message` for ours, message otherwise. */
export function describeError(err: unknown): string {
  if (err instanceof CyphonicError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Rebuilds a RequestError from a Nack's status and its "CODE: message" reason text. */
export function requestErrorFromNack(status: number, reason: string): RequestError {
  const m = /^(ERR_[A-Z0-9_]+): ?(.*)$/s.exec(reason);
  return m ? new RequestError(m[1]!, status, m[2]!) : new RequestError('ERR_REFUSED', status, reason);
}
