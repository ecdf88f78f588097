/**
 * Descriptions of wire types, as the Rust generator (`hardlight-codegen`)
 * writes them, and their archived layout under rkyv 0.8's default format
 * (little-endian, 32-bit relative pointers, aligned). docs/PROTOCOL.md
 * section 5 states each rule; every one is checked against archives Rust
 * wrote (codegen/tests/conformance.rs).
 */

/** How one value is archived. Mirrors `hardlight_core::reflect::Shape`. */
export type Shape =
  | { k: "unit" | "bool" | "u8" | "u16" | "u32" | "u64" | "u128" | "i8" | "i16" | "i32" | "i64" | "i128" }
  | { k: "f32" | "f64" | "char" | "string" }
  | { k: "vec" | "option"; of: Shape }
  | { k: "array"; of: Shape; len: number }
  | { k: "tuple"; of: Shape[] }
  | { k: "ref"; name: string };

/** The fields of a struct or variant: unit, named (in order) or positional. */
export type FieldsDesc =
  | { style: "unit" }
  | { style: "named"; names: string[]; shapes: Shape[] }
  | { style: "unnamed"; shapes: Shape[] };

/** A named type: a struct, or an enum whose tag is the variant's position (u8). */
export type TypeDef =
  | { kind: "struct"; fields: FieldsDesc }
  | { kind: "enum"; variants: { name: string; fields: FieldsDesc }[] };

/** Every named type a module uses, by name. */
export type Types = Record<string, TypeDef>;

/** Size and alignment of an archived value, and where each field starts. */
export interface Layout {
  size: number;
  align: number;
}

/** Archived size and alignment of each primitive. */
const PRIMS: Record<string, Layout> = {
  unit: { size: 0, align: 1 },
  bool: { size: 1, align: 1 },
  u8: { size: 1, align: 1 },
  i8: { size: 1, align: 1 },
  u16: { size: 2, align: 2 },
  i16: { size: 2, align: 2 },
  u32: { size: 4, align: 4 },
  i32: { size: 4, align: 4 },
  f32: { size: 4, align: 4 },
  char: { size: 4, align: 4 },
  u64: { size: 8, align: 8 },
  i64: { size: 8, align: 8 },
  f64: { size: 8, align: 8 },
  u128: { size: 16, align: 16 },
  i128: { size: 16, align: 16 },
  // A relative pointer (i32) and a length (u32); a string's 8 bytes hold
  // up to 8 bytes inline instead.
  string: { size: 8, align: 4 },
  vec: { size: 8, align: 4 },
};

/** Rounds `n` up to a multiple of `align` (a power of two). */
export function roundUp(n: number, align: number): number {
  return (n + align - 1) & ~(align - 1);
}

/** A `repr(C)` struct of `shapes` starting at `start` (after a tag, for variants). */
export function structLayout(types: Types, shapes: Shape[], start: number): { offsets: number[]; end: number; align: number } {
  let at = start;
  let align = 1;
  const offsets: number[] = [];
  for (const s of shapes) {
    const l = layoutOf(types, s);
    at = roundUp(at, l.align);
    offsets.push(at);
    at += l.size;
    align = Math.max(align, l.align);
  }
  return { offsets, end: at, align };
}

/** The shapes of a fields description, in order. */
export function fieldShapes(f: FieldsDesc): Shape[] {
  return f.style === "unit" ? [] : f.shapes;
}

const cache = new WeakMap<Types, Map<string, Layout>>();

/** Archived size and alignment of `s`. */
export function layoutOf(types: Types, s: Shape): Layout {
  const prim = PRIMS[s.k];
  if (prim) return prim;
  switch (s.k) {
    case "option": {
      const inner = layoutOf(types, s.of);
      const align = Math.max(1, inner.align);
      return { size: roundUp(roundUp(1, inner.align) + inner.size, align), align };
    }
    case "array": {
      const inner = layoutOf(types, s.of);
      return { size: inner.size * s.len, align: inner.align };
    }
    case "tuple": {
      const st = structLayout(types, s.of, 0);
      return { size: roundUp(st.end, st.align), align: st.align };
    }
    case "ref": {
      let m = cache.get(types);
      if (!m) cache.set(types, (m = new Map()));
      const hit = m.get(s.name);
      if (hit) return hit;
      const def = types[s.name];
      if (!def) throw new Error(`unknown type ${s.name}`);
      let l: Layout;
      if (def.kind === "struct") {
        const st = structLayout(types, fieldShapes(def.fields), 0);
        l = { size: roundUp(st.end, st.align), align: st.align };
      } else {
        // repr(u8): a union of repr(C) structs, each starting with the tag.
        let end = 1;
        let align = 1;
        for (const v of def.variants) {
          const st = structLayout(types, fieldShapes(v.fields), 1);
          end = Math.max(end, st.end);
          align = Math.max(align, st.align);
        }
        l = { size: roundUp(end, align), align };
      }
      m.set(s.name, l);
      return l;
    }
  }
  throw new Error(`unknown shape ${(s as { k: string }).k}`);
}
