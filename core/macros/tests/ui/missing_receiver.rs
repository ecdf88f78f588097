#[hardlight::rpc]
pub trait Counter {
    async fn zero() -> u32;
    async fn add(a: u32, b: u32) -> u32;
}

fn main() {}
