//! JavaScript literals of Rust values, and a seeded generator of random ones.

/// Prints a value as the JavaScript literal the TypeScript decoder returns for it.
pub trait ToJs {
    fn js(&self) -> String;
}

macro_rules! num_js {
    ($($t:ty),*) => { $(impl ToJs for $t { fn js(&self) -> String { self.to_string() } })* };
}
num_js!(u8, u16, u32, i8, i16, i32, usize);

macro_rules! big_js {
    ($($t:ty),*) => { $(impl ToJs for $t { fn js(&self) -> String { format!("{}n", self) } })* };
}
big_js!(u64, u128, i64, i128);

fn float_js(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Debug prints the shortest text that parses back to the same f64.
        format!("{x:?}")
    }
}

impl ToJs for f64 {
    fn js(&self) -> String {
        float_js(*self)
    }
}

impl ToJs for f32 {
    fn js(&self) -> String {
        float_js(f64::from(*self))
    }
}

impl ToJs for bool {
    fn js(&self) -> String {
        self.to_string()
    }
}

impl ToJs for str {
    fn js(&self) -> String {
        let mut out = String::from("\"");
        for c in self.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

impl ToJs for String {
    fn js(&self) -> String {
        self.as_str().js()
    }
}

impl ToJs for char {
    fn js(&self) -> String {
        self.to_string().js()
    }
}

impl<T: ToJs> ToJs for Vec<T> {
    fn js(&self) -> String {
        format!("[{}]", self.iter().map(ToJs::js).collect::<Vec<_>>().join(","))
    }
}

impl<T: ToJs, const N: usize> ToJs for [T; N] {
    fn js(&self) -> String {
        format!("[{}]", self.iter().map(ToJs::js).collect::<Vec<_>>().join(","))
    }
}

impl<T: ToJs> ToJs for Option<T> {
    fn js(&self) -> String {
        self.as_ref().map_or_else(|| "null".into(), ToJs::js)
    }
}

impl<A: ToJs, B: ToJs> ToJs for (A, B) {
    fn js(&self) -> String {
        format!("[{},{}]", self.0.js(), self.1.js())
    }
}

impl<A: ToJs, B: ToJs, C: ToJs> ToJs for (A, B, C) {
    fn js(&self) -> String {
        format!("[{},{},{}]", self.0.js(), self.1.js(), self.2.js())
    }
}

/// xorshift64*: a seeded generator, so a failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random value, biased towards the edges that matter for the layout
/// (strings around the 8-byte inline capacity, empty and short vectors).
pub trait Rand {
    fn rand(r: &mut Rng) -> Self;
}

macro_rules! int_rand {
    ($($t:ty),*) => { $(impl Rand for $t {
        fn rand(r: &mut Rng) -> Self {
            match r.below(4) {
                0 => 0 as $t,
                1 => <$t>::MAX,
                2 => <$t>::MIN,
                _ => r.next() as $t,
            }
        }
    })* };
}
int_rand!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Rand for u128 {
    fn rand(r: &mut Rng) -> Self {
        (u128::from(r.next()) << 64) | u128::from(r.next())
    }
}

impl Rand for i128 {
    fn rand(r: &mut Rng) -> Self {
        u128::rand(r) as i128
    }
}

impl Rand for bool {
    fn rand(r: &mut Rng) -> Self {
        r.next() & 1 == 1
    }
}

impl Rand for f64 {
    fn rand(r: &mut Rng) -> Self {
        // Any bit pattern but NaN (whose payload JavaScript may not keep).
        let x = f64::from_bits(r.next());
        if x.is_nan() {
            -0.0
        } else {
            x
        }
    }
}

impl Rand for f32 {
    fn rand(r: &mut Rng) -> Self {
        let x = f32::from_bits(r.next() as u32);
        if x.is_nan() {
            f32::INFINITY
        } else {
            x
        }
    }
}

impl Rand for char {
    fn rand(r: &mut Rng) -> Self {
        match r.below(3) {
            0 => (b'a' + r.below(26) as u8) as char,
            1 => char::from_u32(0x80 + r.below(0x800) as u32).unwrap_or('é'),
            _ => char::from_u32(r.below(0x11_0000) as u32).unwrap_or('\u{10FFFF}'),
        }
    }
}

impl Rand for String {
    fn rand(r: &mut Rng) -> Self {
        let len = match r.below(3) {
            0 => r.below(9),
            1 => 7 + r.below(4),
            _ => r.below(40),
        };
        (0..len).map(|_| char::rand(r)).collect()
    }
}

impl<T: Rand> Rand for Vec<T> {
    fn rand(r: &mut Rng) -> Self {
        let len = r.below(4);
        (0..len).map(|_| T::rand(r)).collect()
    }
}

impl<T: Rand, const N: usize> Rand for [T; N] {
    fn rand(r: &mut Rng) -> Self {
        std::array::from_fn(|_| T::rand(r))
    }
}

impl<T: Rand> Rand for Option<T> {
    fn rand(r: &mut Rng) -> Self {
        (r.below(3) != 0).then(|| T::rand(r))
    }
}

impl<A: Rand, B: Rand> Rand for (A, B) {
    fn rand(r: &mut Rng) -> Self {
        (A::rand(r), B::rand(r))
    }
}

impl<A: Rand, B: Rand, C: Rand> Rand for (A, B, C) {
    fn rand(r: &mut Rng) -> Self {
        (A::rand(r), B::rand(r), C::rand(r))
    }
}
