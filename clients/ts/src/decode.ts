/**
 * rkyv 0.8 archives to values, validating as the server's bytecheck does
 * (`hardlight_core::wire::access`): the root read from the end, every
 * relative pointer inside the archive and aligned, out-of-line objects
 * before their parent and after the previous sibling's (rkyv's subtree
 * ranges), a nesting depth limit, valid tags, bools, chars and UTF-8. So
 * an archive this decoder accepts is one the Rust side accepts too, and a
 * hostile server cannot make the page loop, recurse without bound or read
 * outside the message.
 */
import { FieldsDesc, Shape, Types, fieldShapes, layoutOf, roundUp, structLayout } from "./shape.js";
import { INLINE_CAPACITY } from "./encode.js";

/** Default nesting depth limit, as `hardlight_core::limits::DEFAULT_MAX_VALIDATION_DEPTH`. */
export const DEFAULT_MAX_DEPTH = 64;

/** The bytes are not a valid archive of the expected type. */
export class DecodeError extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  view: DataView;
  start = 0;
  end: number;
  depthLeft: number;
  constructor(
    readonly bytes: Uint8Array,
    readonly types: Types,
    maxDepth: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.end = bytes.length;
    this.depthLeft = maxDepth;
  }

  /** rkyv's `in_subtree`: check the range, narrow to what lies before it, run `f`, then continue after it. */
  subtree<R>(pos: number, size: number, align: number, f: () => R): R {
    if (pos < this.start || pos + size > this.end) {
      throw new DecodeError("a relative pointer or length reaches outside the archive");
    }
    if (pos % align !== 0) throw new DecodeError("a relative pointer is not aligned for its target");
    this.depthLeft -= 1;
    if (this.depthLeft <= 0) throw new DecodeError("objects nest deeper than the validation depth limit");
    const after = pos + size;
    const outerEnd = this.end;
    this.end = pos;
    const r = f();
    this.start = after;
    this.end = outerEnd;
    this.depthLeft += 1;
    return r;
  }
}

function readFields(rd: Reader, f: FieldsDesc, at: number, start: number, positionalKeys: boolean): unknown {
  const shapes = fieldShapes(f);
  const st = structLayout(rd.types, shapes, start);
  const vals = shapes.map((s, i) => read(rd, s, at + st.offsets[i]));
  if (f.style === "named") {
    const o: Record<string, unknown> = {};
    f.names.forEach((n, i) => (o[n] = vals[i]));
    return o;
  }
  if (f.style === "unnamed" && !positionalKeys) return vals;
  const o: Record<string, unknown> = {};
  vals.forEach((v, i) => (o[String(i)] = v));
  return o;
}

function read(rd: Reader, s: Shape, at: number): unknown {
  const d = rd.view;
  switch (s.k) {
    case "unit":
      return null;
    case "bool": {
      const b = d.getUint8(at);
      if (b > 1) throw new DecodeError("a bool is neither 0 nor 1");
      return b === 1;
    }
    case "u8":
      return d.getUint8(at);
    case "i8":
      return d.getInt8(at);
    case "u16":
      return d.getUint16(at, true);
    case "i16":
      return d.getInt16(at, true);
    case "u32":
      return d.getUint32(at, true);
    case "i32":
      return d.getInt32(at, true);
    case "u64":
      return d.getBigUint64(at, true);
    case "i64":
      return d.getBigInt64(at, true);
    case "u128":
    case "i128": {
      const b = d.getBigUint64(at, true) | (d.getBigUint64(at + 8, true) << 64n);
      return s.k === "i128" ? BigInt.asIntN(128, b) : b;
    }
    case "f32":
      return d.getFloat32(at, true);
    case "f64":
      return d.getFloat64(at, true);
    case "char": {
      const c = d.getUint32(at, true);
      if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) throw new DecodeError("a char is not a Unicode scalar value");
      return String.fromCodePoint(c);
    }
    case "string": {
      const first = d.getUint8(at);
      if ((first & 0xc0) !== 0x80) {
        let len = 0;
        while (len < INLINE_CAPACITY && d.getUint8(at + len) !== 0xff) len++;
        return text(rd.bytes.subarray(at, at + len));
      }
      const raw = d.getUint32(at, true);
      const len = (raw & 0x3f) | ((raw & ~0xff) >>> 2);
      if (len <= INLINE_CAPACITY) throw new DecodeError("an out-of-line string is short enough to be inline");
      const target = at + d.getInt32(at + 4, true);
      return rd.subtree(target, len, 1, () => text(rd.bytes.subarray(target, target + len)));
    }
    case "vec": {
      const target = at + d.getInt32(at, true);
      const len = d.getUint32(at + 4, true);
      const l = layoutOf(rd.types, s.of);
      // The generator refuses vecs of zero-sized types; a hand-written shape
      // must not let eight bytes announce four billion elements.
      if (l.size === 0 && len > 0) throw new DecodeError("a vec of zero-sized elements is not supported");
      return rd.subtree(target, l.size * len, l.align, () => {
        const out = new Array(len);
        for (let i = 0; i < len; i++) out[i] = read(rd, s.of, target + i * l.size);
        return out;
      });
    }
    case "option": {
      const tag = d.getUint8(at);
      if (tag > 1) throw new DecodeError("an enum tag is not one of the type's variants");
      return tag === 0 ? null : read(rd, s.of, at + roundUp(1, layoutOf(rd.types, s.of).align));
    }
    case "array": {
      const l = layoutOf(rd.types, s.of);
      const out = new Array(s.len);
      for (let i = 0; i < s.len; i++) out[i] = read(rd, s.of, at + i * l.size);
      return out;
    }
    case "tuple": {
      const st = structLayout(rd.types, s.of, 0);
      return s.of.map((t, i) => read(rd, t, at + st.offsets[i]));
    }
    case "ref": {
      const def = rd.types[s.name];
      if (def.kind === "struct") return readFields(rd, def.fields, at, 0, false);
      const tag = d.getUint8(at);
      const v = def.variants[tag];
      if (!v) throw new DecodeError("an enum tag is not one of the type's variants");
      const fs = readFields(rd, v.fields, at, 1, true) as Record<string, unknown> | unknown[];
      return { tag: v.name, ...(fs as Record<string, unknown>) };
    }
  }
}

function text(b: Uint8Array): string {
  try {
    return utf8.decode(b);
  } catch {
    throw new DecodeError("a string is not valid UTF-8");
  }
}

/**
 * Validates `bytes` as exactly one archive of shape `s` and returns its
 * value. Integers of 64 bits and more come back as `bigint`.
 */
export function decode(types: Types, s: Shape, bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): unknown {
  const l = layoutOf(types, s);
  const rd = new Reader(bytes, types, maxDepth);
  if (bytes.length < l.size) {
    throw new DecodeError(
      `${bytes.length}-byte archive is too short: the root object of the expected type alone takes ${l.size} bytes`,
    );
  }
  const root = bytes.length - l.size;
  return rd.subtree(root, l.size, l.align, () => read(rd, s, root));
}
