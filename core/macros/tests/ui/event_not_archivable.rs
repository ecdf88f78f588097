// An event type that cannot travel is reported on the type in `events(...)`.
pub struct Joined {
    pub user: String,
}

#[hardlight::rpc(events(Joined))]
pub trait Room {
    async fn join(&self, user: String);
}

fn main() {}
