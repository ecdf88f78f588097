#[hardlight::wire]
pub union Bits {
    pub i: u32,
    pub f: f32,
}

#[hardlight::wire]
pub fn not_a_type() {}

fn main() {}
