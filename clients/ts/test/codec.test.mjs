// The byte examples of docs/PROTOCOL.md section 5 (the Rust side asserts
// the same bytes in codegen/tests/layout_examples.rs), and the decoder's
// refusals of hostile archives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode, DecodeError, layoutOf } from "../dist/src/index.js";

const TYPES = {
  Post: {
    kind: "struct",
    fields: { style: "named", names: ["id", "body", "tags"], shapes: [{ k: "u16" }, { k: "string" }, { k: "vec", of: { k: "u32" } }] },
  },
  Figure: {
    kind: "enum",
    variants: [
      { name: "Dot", fields: { style: "unit" } },
      { name: "Circle", fields: { style: "unnamed", shapes: [{ k: "u8" }, { k: "u32" }] } },
      { name: "Rect", fields: { style: "named", names: ["w", "h"], shapes: [{ k: "u16" }, { k: "u16" }] } },
    ],
  },
};
const POST = { k: "ref", name: "Post" };
const FIGURE = { k: "ref", name: "Figure" };
const bytes = (h) => new Uint8Array(h.split(" ").map((x) => parseInt(x, 16)));
const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

const EXAMPLES = [
  [POST, { id: 7, body: "hello, world", tags: [1, 2] },
    "68 65 6c 6c 6f 2c 20 77 6f 72 6c 64 01 00 00 00 02 00 00 00 07 00 00 00 8c 00 00 00 e8 ff ff ff ec ff ff ff 02 00 00 00"],
  [FIGURE, { tag: "Dot" }, "00 00 00 00 00 00 00 00"],
  [FIGURE, { tag: "Circle", 0: 3, 1: 500 }, "01 03 00 00 f4 01 00 00"],
  [FIGURE, { tag: "Rect", w: 2, h: 3 }, "02 00 02 00 03 00 00 00"],
  [{ k: "option", of: { k: "u64" } }, 5n, "01 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00"],
  [{ k: "array", of: { k: "u16" }, len: 3 }, [1, 2, 3], "01 00 02 00 03 00"],
  [{ k: "tuple", of: [{ k: "u8" }, { k: "u64" }] }, [1, 2n], "01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00"],
  [{ k: "string" }, "abc", "61 62 63 ff ff ff ff ff"],
];

test("PROTOCOL.md section 5's archives, both ways", () => {
  for (const [shape, value, h] of EXAMPLES) {
    assert.equal(hex(encode(TYPES, shape, value)), h);
    assert.deepEqual(decode(TYPES, shape, bytes(h)), value);
  }
  assert.deepEqual(layoutOf(TYPES, POST), { size: 20, align: 4 });
  assert.deepEqual(layoutOf(TYPES, FIGURE), { size: 8, align: 4 });
});

test("hostile archives are refused, never misread", () => {
  const post = bytes(EXAMPLES[0][2]);
  const refuse = (b, what, shape = POST, depth) =>
    assert.throws(() => decode(TYPES, shape, b, depth), (e) => e instanceof DecodeError && e.message.includes(what));
  refuse(post.slice(0, 19), "too short");
  const outside = post.slice();
  outside[28] = 0x10; // the string's offset now points past the end
  refuse(outside, "outside the archive");
  const unaligned = post.slice();
  unaligned[32] = 0xed; // one element at offset 13, inside the range but not aligned
  unaligned[36] = 1;
  refuse(unaligned, "not aligned");
  const badUtf8 = post.slice();
  badUtf8[0] = 0xff;
  refuse(badUtf8, "UTF-8");
  const shortOutOfLine = post.slice();
  shortOutOfLine[24] = 0x88;
  refuse(shortOutOfLine, "inline");
  refuse(bytes("07 03 00 00 f4 01 00 00"), "tag", FIGURE);
  refuse(bytes("02"), "neither 0 nor 1", { k: "bool" });
  refuse(bytes("00 d8 00 00"), "Unicode scalar", { k: "char" });
  // The root and the string's bytes are two levels: depth 2 refuses.
  refuse(post, "depth", POST, 2);
  assert.deepEqual(decode(TYPES, POST, post, 3).body, "hello, world");
  // Overlapping objects: both vec and string pointing at the same bytes.
  const overlap = post.slice();
  overlap[32] = 0xe0; // tags -> offset 0, where the string's bytes are
  refuse(overlap, "outside the archive");
});

test("values that do not fit their shape are refused by the encoder", () => {
  assert.throws(() => encode(TYPES, { k: "u8" }, 256), /does not fit u8/);
  assert.throws(() => encode(TYPES, { k: "u64" }, -1n), /does not fit u64/);
  assert.throws(() => encode(TYPES, { k: "array", of: { k: "u8" }, len: 2 }, [1]), /array of 2/);
  assert.throws(() => encode(TYPES, FIGURE, { tag: "Square" }), /not a variant/);
  assert.throws(() => encode(TYPES, { k: "char" }, "ab"), /one code point/);
});
