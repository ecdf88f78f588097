#[hardlight::rpc]
pub trait Store {
    async fn put<T>(&self, value: T) -> bool;
    async fn take(&self, key: u32) -> u32 where u32: Copy;
}

fn main() {}
