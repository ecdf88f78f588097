// The crate path is HardLight's business under `#[hardlight::wire]`.
#[hardlight::wire]
#[rkyv(crate = hardlight::rkyv)]
pub struct Point {
    pub x: u32,
}

fn main() {}
