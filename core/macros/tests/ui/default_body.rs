#[hardlight::rpc]
pub trait Counter {
    async fn get(&self) -> u32 {
        0
    }
}

fn main() {}
