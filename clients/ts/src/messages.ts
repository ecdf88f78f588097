/**
 * Parsers for the server's FEATURES and STATE bodies, as
 * `hardlight_core::FeatureSet::decode` and `hardlight_core::state::parse_state`.
 * Byte layouts: docs/PROTOCOL.md sections 4 and 7.
 */
import { SessionError } from "./errors.js";

/** The set of methods the server lets this connection call. */
export class FeatureSet {
  constructor(
    readonly count: number,
    private readonly bitmap: Uint8Array,
  ) {}
  /** Whether method `id` is enabled. */
  has(id: number): boolean {
    return id < this.count && (this.bitmap[id >> 3] & (1 << (id & 7))) !== 0;
  }
  /** Parses a FEATURES body (after the kind byte), as `FeatureSet::decode`. */
  static decode(body: Uint8Array): FeatureSet {
    if (body.length < 2) throw new SessionError("malformed features message: truncated count");
    const count = body[0] | (body[1] << 8);
    const bitmap = body.slice(2);
    if (bitmap.length !== Math.ceil(count / 8)) {
      throw new SessionError("malformed features message: bitmap length does not match the method count");
    }
    if (count % 8 !== 0 && bitmap[bitmap.length - 1] >> count % 8 !== 0) {
      throw new SessionError("malformed features message: bits set beyond the method count");
    }
    return new FeatureSet(count, bitmap);
  }
}

/** Parses a STATE body as `hardlight_core::state::parse_state`. */
export function parseState(body: Uint8Array): [number, Uint8Array][] {
  if (body.length === 0) throw new SessionError("malformed state message from the server: empty");
  const n = body[0];
  let at = 1;
  const out: [number, Uint8Array][] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let i = 0; i < n; i++) {
    if (body.length - at < 5) throw new SessionError("malformed state message from the server: field header truncated");
    const index = body[at];
    const len = view.getUint32(at + 1, true);
    at += 5;
    if (body.length - at < len) throw new SessionError("malformed state message from the server: field archive truncated");
    out.push([index, body.slice(at, at + len)]);
    at += len;
  }
  if (at !== body.length) throw new SessionError("malformed state message from the server: trailing bytes");
  return out;
}
