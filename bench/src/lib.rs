//! The service every HardLight benchmark and load run uses, so that the
//! glommio server, the tokio baseline server and the micro-benchmarks all
//! measure the same dispatch and the same archives.

use hardlight::rkyv;

pub mod baseline;
pub mod fan;
pub mod fan_floor;
pub mod stateful;

/// Size of the fixed echo payload, matching the peers' 64-byte messages.
pub const ECHO_SIZE: usize = 64;

/// A fixed-size payload: archives with no out-of-line data, so decoding it
/// needs no heap allocation.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(crate = hardlight::rkyv)]
pub struct Payload64 {
    /// The bytes.
    pub bytes: [u8; ECHO_SIZE],
}

/// Methods exercised by the benchmarks.
#[hardlight::rpc]
pub trait Bench {
    /// Echoes a fixed 64-byte payload (the allocation-free hot path).
    async fn echo64(&self, payload: Payload64) -> Payload64;
    /// Echoes `data` of any size (allocates for the Vec, as any owned input would).
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Adds two numbers: the smallest possible call.
    async fn add(&self, a: u64, b: u64) -> u64;
}

/// The benchmark handler: stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchHandler;

impl Bench for BenchHandler {
    async fn echo64(&self, payload: Payload64) -> Payload64 {
        payload
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
}
