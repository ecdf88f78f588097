// An event type's id is its position in one service's list; declaring it
// with two services is rejected by the compiler (two `Event` impls).
#[hardlight::wire]
pub struct Joined {
    pub user: String,
}

#[hardlight::rpc(events(Joined))]
pub trait Room {
    async fn join(&self, user: String);
}

#[hardlight::rpc(events(Joined))]
pub trait Lobby {
    async fn enter(&self, user: String);
}

fn main() {}
