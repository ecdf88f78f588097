// The TypeScript half of codegen/tests/conformance.rs (run by it):
//   node conformance.mjs CASES.mjs OUT.txt SEED
// 1. every archive Rust wrote decodes to the value Rust printed, and that
//    value encodes to the same bytes;
// 2. every corrupted archive (and depth-limited decode) is accepted exactly
//    when rkyv's validator accepted it, with the same value;
// 3. random values made here are encoded and written to OUT.txt for Rust
//    to validate with bytecheck and re-encode.
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { decode, encode, DecodeError } from "../dist/src/index.js";

const [casesPath, outPath, seedArg] = process.argv.slice(2);
const { TYPES, SHAPES, CASES, MUTANTS } = await import(pathToFileURL(casesPath).href);

const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (h) => new Uint8Array(Buffer.from(h, "hex"));

/** Deep equality with bigint, NaN and -0 told apart. */
export function same(a, b) {
  if (typeof a === "number" && typeof b === "number") return Object.is(a, b);
  if (typeof a !== typeof b) return false;
  if (a === null || b === null || typeof a !== "object") return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

const show = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));
let failures = 0;
const fail = (msg) => {
  failures++;
  if (failures <= 20) console.error(msg);
};

// 1. Rust's archives.
for (const [name, h, value, what] of CASES) {
  const bytes = unhex(h);
  let got;
  try {
    got = decode(TYPES, SHAPES[name], bytes);
  } catch (e) {
    fail(`${what} ${name}: decode failed: ${e.message}\n  ${h}`);
    continue;
  }
  if (!same(got, value)) fail(`${what} ${name}: decoded ${show(got)}\n  expected ${show(value)}`);
  const again = hex(encode(TYPES, SHAPES[name], value));
  if (again !== h) fail(`${what} ${name}: encoded\n  ${again}\n  rkyv wrote\n  ${h}`);
}

// 2. Corruptions and depth limits: the same verdict as rkyv.
let accepted = 0;
for (const [name, h, expected, depth] of MUTANTS) {
  let got = null;
  try {
    got = decode(TYPES, SHAPES[name], unhex(h), depth);
  } catch (e) {
    if (!(e instanceof DecodeError)) fail(`mutant ${name}: threw ${e} instead of a DecodeError`);
  }
  if (expected === null && got !== null) fail(`mutant ${name} depth ${depth}: rkyv refuses, TS accepted ${show(got)}\n  ${h}`);
  else if (expected !== null && got === null) fail(`mutant ${name} depth ${depth}: rkyv accepts, TS refused\n  ${h}`);
  else if (expected !== null && !same(got, expected)) fail(`mutant ${name}: values differ ${show(got)} vs ${show(expected)}`);
  if (expected !== null) accepted++;
}

// 3. Random values of our own.
let s = Number(BigInt(seedArg ?? "1") & 0xffffffffn) | 1;
const rnd = () => {
  // mulberry32
  s = (s + 0x6d2b79f5) | 0;
  let t = Math.imul(s ^ (s >>> 15), 1 | s);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const below = (n) => Math.floor(rnd() * n);
const bits = (n) => {
  let b = 0n;
  for (let i = 0; i < n; i += 16) b = (b << 16n) | BigInt(below(65536));
  return BigInt.asUintN(n, b);
};
const ALPHABET = ["a", "Z", "0", " ", "é", "ß", "€", "中", "😀", "\u0000", "\n", '"'];
const INT_BITS = { u8: 8, u16: 16, u32: 32, i8: 8, i16: 16, i32: 32 };

function randValue(shape) {
  switch (shape.k) {
    case "unit":
      return null;
    case "bool":
      return below(2) === 1;
    case "u8": case "u16": case "u32": case "i8": case "i16": case "i32": {
      const n = INT_BITS[shape.k];
      const u = Number(bits(n));
      return shape.k.startsWith("i") && u >= 2 ** (n - 1) ? u - 2 ** n : u;
    }
    case "u64": case "u128":
      return bits(shape.k === "u64" ? 64 : 128);
    case "i64": case "i128":
      return BigInt.asIntN(shape.k === "i64" ? 64 : 128, bits(shape.k === "i64" ? 64 : 128));
    case "f32": {
      const v = new DataView(new ArrayBuffer(4));
      v.setUint32(0, Number(bits(32)));
      const x = v.getFloat32(0);
      return Number.isNaN(x) ? 0.5 : x;
    }
    case "f64": {
      const v = new DataView(new ArrayBuffer(8));
      v.setBigUint64(0, bits(64));
      const x = v.getFloat64(0);
      return Number.isNaN(x) ? -0 : x;
    }
    case "char":
      return ALPHABET[below(ALPHABET.length)];
    case "string": {
      const len = below(3) === 0 ? 6 + below(5) : below(30);
      let out = "";
      for (let i = 0; i < len; i++) out += ALPHABET[below(ALPHABET.length)];
      return out;
    }
    case "vec":
      return Array.from({ length: below(4) }, () => randValue(shape.of));
    case "option":
      return below(3) === 0 ? null : randValue(shape.of);
    case "array":
      return Array.from({ length: shape.len }, () => randValue(shape.of));
    case "tuple":
      return shape.of.map(randValue);
    case "ref": {
      const def = TYPES[shape.name];
      if (def.kind === "struct") return fieldsValue(def.fields, false);
      const v = def.variants[below(def.variants.length)];
      return { tag: v.name, ...fieldsValue(v.fields, true) };
    }
  }
  throw new Error(`shape ${shape.k}`);
}

function fieldsValue(f, positionalKeys) {
  if (f.style === "unit") return {};
  if (f.style === "named") return Object.fromEntries(f.names.map((n, i) => [n, randValue(f.shapes[i])]));
  const vals = f.shapes.map(randValue);
  return positionalKeys ? Object.fromEntries(vals.map((v, i) => [String(i), v])) : vals;
}

const lines = [];
const PER_TYPE = 150;
for (const name of Object.keys(SHAPES)) {
  if (name === "EchoInput") continue;
  for (let i = 0; i < PER_TYPE; i++) {
    const v = randValue(SHAPES[name]);
    const b = encode(TYPES, SHAPES[name], v);
    const back = decode(TYPES, SHAPES[name], b);
    if (!same(back, v)) fail(`random ${name}: ${show(v)} came back as ${show(back)}`);
    lines.push(`${name} ${hex(b)}`);
  }
}
writeFileSync(outPath, lines.join("\n") + "\n");
console.log(
  `TS: ${CASES.length} Rust archives decoded and re-encoded, ${MUTANTS.length} corrupted or depth-limited archives judged (${accepted} accepted by both), ${lines.length} random archives written`,
);
if (failures > 0) {
  console.error(`${failures} failures`);
  process.exit(1);
}
