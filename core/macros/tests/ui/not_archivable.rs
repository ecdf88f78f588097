pub struct Point {
    pub x: u32,
    pub y: u32,
}

#[hardlight::rpc]
pub trait Geometry {
    async fn area(&self, corner: Point, scale: u32) -> u64;
    async fn origin(&self) -> Point;
}

fn main() {}
