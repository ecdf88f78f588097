/**
 * Values to rkyv 0.8 archives, byte-identical to what Rust writes: each
 * value's out-of-line parts first (string bytes, vec elements), depth
 * first in field order, then the value itself at its alignment; padding is
 * zero; the root is last, so the archive ends with it (PROTOCOL.md §5).
 */
import { FieldsDesc, Shape, Types, fieldShapes, layoutOf, roundUp, structLayout } from "./shape.js";

/** Strings up to this many bytes are stored inside their 8 bytes. */
export const INLINE_CAPACITY = 8;
/** Longest out-of-line string: the length keeps 30 bits. */
export const MAX_STRING_LEN = (1 << 30) - 1;

const utf8 = new TextEncoder();

/** A value could not be encoded as the given shape. */
export class EncodeError extends Error {}

/** A growable byte buffer with a write position. */
class Writer {
  buf = new Uint8Array(64);
  pos = 0;
  view = new DataView(this.buf.buffer);
  reserve(n: number): number {
    const at = this.pos;
    const need = at + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.pos));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.pos = need;
    return at;
  }
  align(a: number): number {
    const at = roundUp(this.pos, a);
    this.reserve(at - this.pos);
    return at;
  }
}

/**
 * What a value's out-of-line parts left behind for its inline bytes: a
 * position, a string's bytes (encoded once) and position, or the
 * resolvers of its parts.
 */
type Resolver = number | { bytes: Uint8Array; at: number } | Resolver[] | null;

function fields(f: FieldsDesc, v: unknown): unknown[] {
  if (f.style === "unit") return [];
  if (f.style === "unnamed") {
    const arr = v as unknown[];
    return f.shapes.map((_, i) => arr[i]);
  }
  const obj = v as Record<string, unknown>;
  return f.names.map((n) => obj[n]);
}

function variantIndex(types: Types, name: string, v: unknown): number {
  const def = types[name];
  if (def.kind !== "enum") throw new EncodeError(`${name} is not an enum`);
  const tag = (v as { tag?: unknown })?.tag;
  const i = def.variants.findIndex((x) => x.name === tag);
  if (i < 0) throw new EncodeError(`${String(tag)} is not a variant of ${name}`);
  return i;
}

/** Enum variant fields: named ones inline in the object, positional ones under "0", "1", .... */
function variantFields(f: FieldsDesc, v: unknown): unknown[] {
  if (f.style === "unnamed") {
    const o = v as Record<string, unknown>;
    return f.shapes.map((_, i) => o[String(i)]);
  }
  return fields(f, v);
}

function deps(w: Writer, types: Types, s: Shape, v: unknown): Resolver {
  switch (s.k) {
    case "string": {
      if (typeof v !== "string") throw new EncodeError(`string expected, got ${typeof v}`);
      const bytes = utf8.encode(v);
      if (bytes.length <= INLINE_CAPACITY) return { bytes, at: -1 };
      if (bytes.length > MAX_STRING_LEN) throw new EncodeError("string too long");
      const at = w.reserve(bytes.length);
      w.buf.set(bytes, at);
      return { bytes, at };
    }
    case "vec": {
      const arr = v as unknown[];
      const rs = arr.map((x) => deps(w, types, s.of, x));
      const l = layoutOf(types, s.of);
      const at = w.align(l.align);
      w.reserve(l.size * arr.length);
      arr.forEach((x, i) => resolve(w, types, s.of, x, rs[i], at + i * l.size));
      return at;
    }
    case "option":
      return v === null || v === undefined ? null : [deps(w, types, s.of, v)];
    case "array": {
      const arr = v as unknown[];
      if (!Array.isArray(arr) || arr.length !== s.len) throw new EncodeError(`array of ${s.len} expected`);
      return arr.map((x) => deps(w, types, s.of, x));
    }
    case "tuple":
      return s.of.map((t, i) => deps(w, types, t, (v as unknown[])[i]));
    case "ref": {
      const def = types[s.name];
      if (def.kind === "struct") {
        const fs = fieldShapes(def.fields);
        const vs = fields(def.fields, v);
        return fs.map((t, i) => deps(w, types, t, vs[i]));
      }
      const vi = variantIndex(types, s.name, v);
      const f = def.variants[vi].fields;
      const vs = variantFields(f, v);
      return fieldShapes(f).map((t, i) => deps(w, types, t, vs[i]));
    }
    default:
      return null;
  }
}

function intRange(v: unknown, bits: number, signed: boolean): bigint {
  const b = typeof v === "bigint" ? v : typeof v === "number" && Number.isInteger(v) ? BigInt(v) : null;
  if (b === null) throw new EncodeError(`integer expected, got ${typeof v}`);
  const min = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const max = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  if (b < min || b > max) throw new EncodeError(`${b} does not fit ${signed ? "i" : "u"}${bits}`);
  return b;
}

/** Writes `v`'s inline bytes at `at` (already reserved and zeroed). */
function resolve(w: Writer, types: Types, s: Shape, v: unknown, r: Resolver, at: number): void {
  const d = w.view;
  switch (s.k) {
    case "unit":
      return;
    case "bool":
      if (typeof v !== "boolean") throw new EncodeError("boolean expected");
      d.setUint8(at, v ? 1 : 0);
      return;
    case "u8":
      d.setUint8(at, Number(intRange(v, 8, false)));
      return;
    case "i8":
      d.setInt8(at, Number(intRange(v, 8, true)));
      return;
    case "u16":
      d.setUint16(at, Number(intRange(v, 16, false)), true);
      return;
    case "i16":
      d.setInt16(at, Number(intRange(v, 16, true)), true);
      return;
    case "u32":
      d.setUint32(at, Number(intRange(v, 32, false)), true);
      return;
    case "i32":
      d.setInt32(at, Number(intRange(v, 32, true)), true);
      return;
    case "u64":
      d.setBigUint64(at, intRange(v, 64, false), true);
      return;
    case "i64":
      d.setBigInt64(at, intRange(v, 64, true), true);
      return;
    case "u128":
    case "i128": {
      const b = BigInt.asUintN(128, intRange(v, 128, s.k === "i128"));
      d.setBigUint64(at, BigInt.asUintN(64, b), true);
      d.setBigUint64(at + 8, b >> 64n, true);
      return;
    }
    case "f32":
      d.setFloat32(at, v as number, true);
      return;
    case "f64":
      d.setFloat64(at, v as number, true);
      return;
    case "char": {
      const cp = typeof v === "string" ? v.codePointAt(0) : undefined;
      if (cp === undefined || String.fromCodePoint(cp) !== v) throw new EncodeError("one code point expected");
      d.setUint32(at, cp, true);
      return;
    }
    case "string": {
      const { bytes, at: target } = r as { bytes: Uint8Array; at: number };
      if (bytes.length <= INLINE_CAPACITY) {
        w.buf.fill(0xff, at, at + INLINE_CAPACITY);
        w.buf.set(bytes, at);
      } else {
        const l = bytes.length;
        // Length with 0b10 in bits 6 and 7 (a UTF-8 continuation byte can
        // never start a string, so the first byte says "out of line").
        d.setUint32(at, ((l & 0x3f) | 0x80 | ((l & ~0x3f) << 2)) >>> 0, true);
        d.setInt32(at + 4, target - at, true);
      }
      return;
    }
    case "vec":
      d.setInt32(at, (r as number) - at, true);
      d.setUint32(at + 4, (v as unknown[]).length, true);
      return;
    case "option": {
      if (v === null || v === undefined) return;
      d.setUint8(at, 1);
      resolve(w, types, s.of, v, (r as Resolver[])[0], at + roundUp(1, layoutOf(types, s.of).align));
      return;
    }
    case "array": {
      const l = layoutOf(types, s.of);
      (v as unknown[]).forEach((x, i) => resolve(w, types, s.of, x, (r as Resolver[])[i], at + i * l.size));
      return;
    }
    case "tuple": {
      const st = structLayout(types, s.of, 0);
      s.of.forEach((t, i) => resolve(w, types, t, (v as unknown[])[i], (r as Resolver[])[i], at + st.offsets[i]));
      return;
    }
    case "ref": {
      const def = types[s.name];
      let f: FieldsDesc;
      let vs: unknown[];
      let start = 0;
      if (def.kind === "struct") {
        f = def.fields;
        vs = fields(f, v);
      } else {
        const vi = variantIndex(types, s.name, v);
        d.setUint8(at, vi);
        f = def.variants[vi].fields;
        vs = variantFields(f, v);
        start = 1;
      }
      const shapes = fieldShapes(f);
      const st = structLayout(types, shapes, start);
      shapes.forEach((t, i) => resolve(w, types, t, vs[i], (r as Resolver[])[i], at + st.offsets[i]));
      return;
    }
  }
}

/** The archive of `value` as shape `s`: exactly the bytes rkyv writes. */
export function encode(types: Types, s: Shape, value: unknown): Uint8Array {
  const w = new Writer();
  const r = deps(w, types, s, value);
  const l = layoutOf(types, s);
  const at = w.align(l.align);
  w.reserve(l.size);
  resolve(w, types, s, value, r, at);
  return w.buf.slice(0, w.pos);
}
