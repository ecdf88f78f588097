#[hardlight::rpc]
pub trait Counter {
    fn get(&self) -> u32;
}

fn main() {}
