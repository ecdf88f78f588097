#[hardlight::rpc]
pub trait Counter {
    async fn increment(&mut self, amount: u32) -> u32;
    async fn consume(self) -> u32;
}

fn main() {}
