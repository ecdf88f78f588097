#[hardlight::rpc]
pub trait Counter {
    const START: u32;
    type Value;
    async fn get(&self) -> u32;
}

fn main() {}
