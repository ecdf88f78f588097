#[hardlight::wire]
pub struct Joined {
    pub user: String,
}

#[hardlight::rpc(events(Joined, Joined))]
pub trait Room {
    async fn join(&self, user: String);
}

fn main() {}
