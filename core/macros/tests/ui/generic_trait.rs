#[hardlight::rpc]
pub trait Store<T> {
    async fn get(&self, key: u32) -> u32;
}

fn main() {}
