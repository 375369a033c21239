// Plain (unsealed) frames: header + body, for whole datagrams and for the TLS stream to the AS.
// FrameReader deframes a byte stream; a DecodeError from it means the caller must close the connection.

import { DecodeError } from '../util/errors.js';
import { HEADER_LEN, MAX_BODY_LEN, PROTOCOL_VERSION } from './constants.js';
import { type Header, decodeHeader, encodeHeader, peekHeader } from './header.js';

/** Header fields a sender chooses; version and length are filled in by encodeFrame. */
export type FrameHeader = Omit<Header, 'length' | 'version'>;

export interface Frame {
  header: Header;
  body: Buffer;
}

/** Build header + body as one buffer (version = PROTOCOL_VERSION, length = body.length). Throws RangeError. */
export function encodeFrame(h: FrameHeader, body: Uint8Array): Buffer {
  if (body.length > MAX_BODY_LEN) throw new RangeError(`body too long: ${body.length} > ${MAX_BODY_LEN}`);
  const out = Buffer.alloc(HEADER_LEN + body.length);
  encodeHeader(
    { version: PROTOCOL_VERSION, type: h.type, status: h.status, txid: h.txid, seq: h.seq, id: h.id, length: body.length },
    out,
    0,
  );
  out.set(body, HEADER_LEN);
  return out;
}

/** Decode one whole datagram: exact length; body is a zero-copy subarray. Throws DecodeError. */
export function decodeFrame(buf: Uint8Array): Frame {
  const header = decodeHeader(buf);
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { header, body: b.subarray(HEADER_LEN) };
}

export interface FrameReaderOptions {
  /** Reject frames whose body is longer than this. @default MAX_BODY_LEN */
  maxBodyLen?: number;
}

/**
 * Stream deframer: push() chunks as they arrive, get back every complete frame.
 * Headers are validated as soon as their 28 bytes are in, before any body is buffered.
 * After a DecodeError the reader is poisoned and every later push() throws it again.
 * Returned bodies are copies, independent of the pushed chunks.
 */
export class FrameReader {
  /** Private copies of received bytes not yet returned as frames. */
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes that must be buffered before parsing can make progress (avoids re-concatenating partial bodies). */
  private need = HEADER_LEN;
  private failure: DecodeError | undefined;
  private readonly maxBodyLen: number;

  constructor(opts: FrameReaderOptions = {}) {
    this.maxBodyLen = Math.min(opts.maxBodyLen ?? MAX_BODY_LEN, MAX_BODY_LEN);
  }

  /** Bytes held while waiting for the rest of a frame. */
  get buffered(): number {
    return this.size;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failure) throw this.failure;
    if (chunk.length === 0) return [];
    this.chunks.push(Buffer.from(chunk));
    this.size += chunk.length;
    if (this.size < this.need) return [];
    const data = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const frames: Frame[] = [];
    let off = 0;
    this.need = HEADER_LEN;
    try {
      while (data.length - off >= HEADER_LEN) {
        const header = peekHeader(data.subarray(off, off + HEADER_LEN));
        if (header.length > this.maxBodyLen) {
          throw new DecodeError(`frame body ${header.length} exceeds limit ${this.maxBodyLen}`, 'ERR_FRAME_TOO_LARGE');
        }
        const end = off + HEADER_LEN + header.length;
        if (end > data.length) {
          this.need = HEADER_LEN + header.length;
          break;
        }
        // `data` is private to the reader (copied on push), so subarrays of it are safe to hand out.
        frames.push({ header, body: data.subarray(off + HEADER_LEN, end) });
        off = end;
      }
    } catch (err) {
      this.chunks = [];
      this.size = 0;
      this.failure =
        err instanceof DecodeError ? err : new DecodeError(`frame reader: ${String(err)}`, 'ERR_DECODE_HEADER');
      throw this.failure;
    }
    this.chunks = off === data.length ? [] : [data.subarray(off)];
    this.size = data.length - off;
    return frames;
  }
}
