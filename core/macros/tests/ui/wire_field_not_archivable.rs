// A field whose type cannot be archived: rkyv reports the field.
pub struct Opaque;

#[hardlight::wire]
pub struct Holder {
    pub inner: Opaque,
}

fn main() {}
