// `#[hardlight::wire]` already derives rkyv's traits: deriving them again
// is reported on the derive, not as conflicting impls.
#[hardlight::wire]
#[derive(Debug, hardlight::rkyv::Archive)]
pub struct Point {
    pub x: u32,
}

fn main() {}
