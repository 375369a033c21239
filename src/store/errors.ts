// StoreError: the one error type the persistent store raises on purpose.
// Codes: ERR_NAME_TAKEN, ERR_POOL_EXHAUSTED, ERR_STORE_DUPLICATE, ERR_STORE_REFERENCE, ERR_STORE_BUSY, ERR_STORE_CLOSED, ERR_STORE_UNSUPPORTED, ERR_STORE_URL, ERR_STORE_INVALID,
// ERR_STORE_SCHEMA, ERR_STORE_AUTH (wrong user/password), ERR_STORE_UNAVAILABLE (database unreachable), ERR_STORE.

import { CyphonicError } from '../util/errors.js';

/** Failure of the persistent store, with a stable code (see the header for the list). */
export class StoreError extends CyphonicError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
