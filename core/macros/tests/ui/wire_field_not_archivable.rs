// A field whose type cannot be archived: HardLight reports it first, on the field.
pub struct Opaque;

#[hardlight::wire]
pub struct Holder {
    pub inner: Opaque,
}

fn main() {}
