#[hardlight::rpc]
pub trait Geometry {
    async fn area(&self, (w, h): (u32, u32)) -> u64;
}

fn main() {}
