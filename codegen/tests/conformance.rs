//! Cross-language conformance of the TypeScript codecs with rkyv.
//!
//! Rust writes archives of golden and random values with their expected
//! JavaScript values; `clients/ts/test/conformance.mjs` decodes each and
//! compares values, encodes each value and compares bytes, then encodes
//! random values of its own, which Rust validates (bytecheck, as the
//! server does), decodes and re-encodes to the same bytes. Corrupted
//! archives and tight depth limits check that the TS decoder accepts
//! exactly what rkyv's validator accepts.
//!
//! Needs `node` and `clients/ts/node_modules` (`npm ci`); without them the
//! test says so and passes, and CI installs both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{All, Ev, Inner, KitchenEchoInput, KitchenMethod, Pair, Rand, Rng, ToJs};
use hardlight::protocol::reflect::{Reflect, ReflectService, Registry};
use hardlight::Wire;

/// Random values per type in each direction.
const RANDOM_CASES: usize = 150;
/// Corruptions of each of some random archives.
const MUTANTS_PER_ARCHIVE: usize = 12;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Whether node and the TS package's dependencies are here; builds the runtime.
pub fn ts_ready() -> bool {
    let ts = repo().join("clients/ts");
    if Command::new("node").arg("--version").output().is_err() || !ts.join("node_modules/typescript").exists() {
        assert!(
            std::env::var_os("HL_REQUIRE_TS").is_none(),
            "HL_REQUIRE_TS is set but node or clients/ts/node_modules is missing"
        );
        eprintln!("SKIPPED: node or clients/ts/node_modules missing (run `npm ci` in clients/ts); CI runs this test");
        return false;
    }
    let st = Command::new("node")
        .args(["node_modules/typescript/bin/tsc", "-p", "."])
        .current_dir(&ts)
        .status()
        .expect("run tsc");
    assert!(st.success(), "the TypeScript runtime does not compile");
    true
}

/// The JS modules' lines for one type: cases, mutants and depth probes.
struct Out {
    cases: Vec<String>,
    mutants: Vec<String>,
}

fn encode<T: Wire>(v: &T) -> Vec<u8> {
    hardlight::protocol::wire::encode(v).expect("encode").to_vec()
}

/// Rust's verdict on `bytes` as a `T` at `depth`: the value as JS, or null.
fn verdict<T: Wire + ToJs>(bytes: &[u8], depth: usize) -> String {
    let mut buf = hardlight::protocol::wire::AlignedBuf::new();
    T::decode_with_depth(hardlight::protocol::wire::align_into(&mut buf, bytes), depth)
        .map_or("null".into(), |v| v.js())
}

fn add_type<T: Wire + ToJs + Rand>(out: &mut Out, name: &str, golden: &[T], rng: &mut Rng) {
    let mut values: Vec<T> = Vec::new();
    for g in golden {
        let b = encode(g);
        out.cases.push(format!("[{name:?}, {:?}, {}, \"golden\"]", hex(&b), g.js()));
    }
    for _ in 0..RANDOM_CASES {
        values.push(T::rand(rng));
    }
    for v in &values {
        out.cases.push(format!("[{name:?}, {:?}, {}, \"random\"]", hex(&encode(v)), v.js()));
    }
    // Corruptions: flipped bytes, truncations, bytes prepended and appended.
    for v in values.iter().take(20) {
        let b = encode(v);
        for _ in 0..MUTANTS_PER_ARCHIVE {
            let mut m = b.clone();
            match rng.below(4) {
                0 if !m.is_empty() => {
                    let i = rng.below(m.len() as u64) as usize;
                    m[i] = rng.next() as u8;
                }
                1 => m.truncate(rng.below(m.len() as u64 + 1) as usize),
                2 => m.insert(0, rng.next() as u8),
                _ => m.extend((0..1 + rng.below(8)).map(|_| rng.next() as u8)),
            }
            out.mutants.push(format!("[{name:?}, {:?}, {}, 64]", hex(&m), verdict::<T>(&m, 64)));
        }
        // Depth limits around what the value needs.
        for depth in 1..6 {
            out.mutants.push(format!("[{name:?}, {:?}, {}, {depth}]", hex(&b), verdict::<T>(&b, depth)));
        }
    }
}

/// Validates, decodes and re-encodes what TypeScript encoded.
fn check_ts_archive<T: Wire + ToJs>(bytes: &[u8]) -> Result<(), String> {
    let mut buf = hardlight::protocol::wire::AlignedBuf::new();
    let v = T::decode(hardlight::protocol::wire::align_into(&mut buf, bytes)).map_err(|e| e.to_string())?;
    let again = encode(&v);
    if again != bytes {
        return Err(format!("re-encoded by rkyv as {} (TS wrote {})", hex(&again), hex(bytes)));
    }
    Ok(())
}

fn sample_all() -> All {
    All {
        b: true,
        u8_: 0xAB,
        u16_: 0xBEEF,
        u32_: 0xDEAD_BEEF,
        u64_: u64::MAX - 1,
        u128_: u128::MAX / 3,
        i8_: -1,
        i16_: -300,
        i32_: i32::MIN,
        i64_: -(1 << 60),
        i128_: i128::MIN + 7,
        f32_: -1.5,
        f64_: 1e-300,
        c: '\u{1F600}',
        us: 123_456,
        s: "a string longer than eight bytes".into(),
        v: vec![1, 2, 3],
        vs: vec!["short".into(), "exactly8".into(), "nine byte".into(), String::new()],
        o: Some(7),
        os: None,
        arr: [10, 20, 30],
        t: (9, "tuple string!".into(), 99),
        inner: Inner { a: 1, b: 2, s: "inner s".into() },
        inners: vec![Inner { a: 3, b: 4, s: "multi-byte: héllo wörld".into() }],
        e: Ev::Named { x: 5, y: vec![6, 7] },
        es: vec![Ev::Unit, Ev::Tuple(1, "x".into()), Ev::Wide(1 << 100)],
        pair: Pair(65535, "pair".into()),
        nested: Some(vec![None, Some(Inner { a: 0, b: 0, s: String::new() })]),
        deep: vec![vec![], vec![vec![1], vec![2, 3]]],
    }
}

fn empty_all() -> All {
    All {
        b: false,
        u8_: 0,
        u16_: 0,
        u32_: 0,
        u64_: 0,
        u128_: 0,
        i8_: 0,
        i16_: 0,
        i32_: 0,
        i64_: 0,
        i128_: 0,
        f32_: f32::NEG_INFINITY,
        f64_: -0.0,
        c: '\0',
        us: 0,
        s: String::new(),
        v: vec![],
        vs: vec![],
        o: None,
        os: Some(String::new()),
        arr: [0; 3],
        t: (0, String::new(), 0),
        inner: Inner { a: 0, b: 0, s: String::new() },
        inners: vec![],
        e: Ev::Unit,
        es: vec![],
        pair: Pair(0, String::new()),
        nested: None,
        deep: vec![],
    }
}

#[test]
fn typescript_codecs_match_rkyv_both_ways() {
    if !ts_ready() {
        return;
    }
    let seed: u64 = std::env::var("HL_CONFORMANCE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234);
    eprintln!("seed {seed} (HL_CONFORMANCE_SEED replays it)");
    let mut rng = Rng(seed | 1);
    let mut reg = Registry::new();
    let desc = KitchenMethod::describe(&mut reg);
    let mut shapes = Vec::new();
    for (name, shape) in [
        ("Inner", Inner::shape(&mut reg)),
        ("Ev", Ev::shape(&mut reg)),
        ("Pair", Pair::shape(&mut reg)),
        ("All", All::shape(&mut reg)),
        ("u64", u64::shape(&mut reg)),
        ("String", String::shape(&mut reg)),
        ("VecString", Vec::<String>::shape(&mut reg)),
        ("OptionU128", Option::<u128>::shape(&mut reg)),
        ("Tuple", <(u8, String, u64)>::shape(&mut reg)),
    ] {
        shapes.push(format!("  {name}: {},", hardlight_codegen::shape_json(&shape)));
    }
    // The method input as the runtime encodes it: a tuple of the arguments.
    let echo = &desc.methods[0];
    let args: Vec<_> = echo.args.iter().map(|(_, s)| s.clone()).collect();
    shapes.push(format!(
        "  EchoInput: {},",
        hardlight_codegen::shape_json(&hardlight::protocol::reflect::Shape::Tuple(args))
    ));
    let mut out = Out { cases: Vec::new(), mutants: Vec::new() };
    add_type(&mut out, "Inner", &[Inner { a: 1, b: 2, s: "s".into() }], &mut rng);
    add_type(
        &mut out,
        "Ev",
        &[Ev::Unit, Ev::Tuple(1, "twelve bytes".into()), Ev::Named { x: 3, y: vec![4] }, Ev::Wide(5)],
        &mut rng,
    );
    add_type(&mut out, "Pair", &[Pair(1, "p".into())], &mut rng);
    add_type(&mut out, "All", &[sample_all(), empty_all()], &mut rng);
    add_type(&mut out, "u64", &[0u64, u64::MAX], &mut rng);
    add_type(&mut out, "String", &[String::new(), "12345678".into(), "123456789".into()], &mut rng);
    add_type(&mut out, "VecString", &[vec!["a".to_string(), "bbbbbbbbbbbb".into()]], &mut rng);
    add_type(&mut out, "OptionU128", &[None, Some(1u128 << 127)], &mut rng);
    add_type(&mut out, "Tuple", &[(1u8, "t".to_string(), 2u64)], &mut rng);
    // The generated input struct archives exactly like the arguments' tuple.
    let input = KitchenEchoInput { all: sample_all(), n: 42 };
    let input_bytes = hardlight::protocol::wire::encode(&input).expect("encode").to_vec();
    out.cases.push(format!(
        "[\"EchoInput\", {:?}, [{}, {}], \"method input\"]",
        hex(&input_bytes),
        sample_all().js(),
        42u64.js()
    ));

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ts-conformance");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let module = format!(
        "export const TYPES = {};\nexport const SHAPES = {{\n{}\n}};\nexport const CASES = [\n{}\n];\nexport const MUTANTS = [\n{}\n];\n",
        hardlight_codegen::types_json(&reg),
        shapes.join("\n"),
        out.cases.join(",\n"),
        out.mutants.join(",\n")
    );
    std::fs::write(dir.join("cases.mjs"), module).expect("write cases");
    let result = dir.join("ts-encoded.txt");
    let run = Command::new("node")
        .arg(repo().join("clients/ts/test/conformance.mjs"))
        .arg(dir.join("cases.mjs"))
        .arg(&result)
        .arg(seed.to_string())
        .output()
        .expect("run node");
    eprintln!("{}", String::from_utf8_lossy(&run.stdout));
    assert!(run.status.success(), "TypeScript side failed:\n{}", String::from_utf8_lossy(&run.stderr));

    // What TypeScript encoded from its own random values: rkyv must accept
    // each archive (bytecheck, default depth) and write the same bytes.
    let text = std::fs::read_to_string(&result).expect("TS output");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (name, h) = line.split_once(' ').expect("`name hex` lines");
        let bytes = unhex(h);
        let r = match name {
            "Inner" => check_ts_archive::<Inner>(&bytes),
            "Ev" => check_ts_archive::<Ev>(&bytes),
            "Pair" => check_ts_archive::<Pair>(&bytes),
            "All" => check_ts_archive::<All>(&bytes),
            "u64" => check_ts_archive::<u64>(&bytes),
            "String" => check_ts_archive::<String>(&bytes),
            "VecString" => check_ts_archive::<Vec<String>>(&bytes),
            "OptionU128" => check_ts_archive::<Option<u128>>(&bytes),
            "Tuple" => check_ts_archive::<(u8, String, u64)>(&bytes),
            other => panic!("unknown type {other} in TS output"),
        };
        if let Err(e) = r {
            panic!("TypeScript's archive of a random {name} is not rkyv's: {e}\n{h}");
        }
        checked += 1;
    }
    assert!(checked >= 9 * RANDOM_CASES, "only {checked} TS archives came back");
    eprintln!("{} Rust archives decoded and re-encoded by TS, {} mutants judged alike, {checked} TS archives validated by rkyv", out.cases.len(), out.mutants.len());
}
