//! A feature set: which of a service's methods one connection may call, as
//! a value, with its wire form.
//!
//! This is the value type only; the server-side handle that changes a live
//! connection's set and queues the change for the client is
//! [`crate::features::Features`]. Keeping them apart lets the outbox (which
//! stores the current set) and the client session (which decodes it) use
//! the value without depending on the handle.
//!
//! Wire format: `[0x21, method_count: u16 LE, bitmap]`, where the bitmap
//! has `ceil(method_count / 8)` bytes and bit `i % 8` of byte `i / 8` is set
//! when method `i` is enabled.

use crate::envelope::KIND_FEATURES;

/// A set of enabled method ids out of a service's `method_count` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSet {
    count: u16,
    bits: Vec<u64>,
}

impl FeatureSet {
    /// Every method enabled.
    pub fn all(method_count: usize) -> Self {
        let mut s = Self::none(method_count);
        for id in 0..s.count {
            s.enable(id);
        }
        s
    }

    /// No method enabled.
    pub fn none(method_count: usize) -> Self {
        let count = method_count.min(u16::MAX as usize) as u16;
        Self { count, bits: vec![0; (count as usize).div_ceil(64)] }
    }

    /// Only `ids` enabled (ids out of range are ignored).
    pub fn only(method_count: usize, ids: impl IntoIterator<Item = u16>) -> Self {
        let mut s = Self::none(method_count);
        for id in ids {
            s.enable(id);
        }
        s
    }

    /// Number of methods the set covers.
    pub fn method_count(&self) -> usize {
        self.count as usize
    }

    /// Enables `id`. Returns whether the set changed.
    pub fn enable(&mut self, id: u16) -> bool {
        if id >= self.count || self.is_enabled(id) {
            return false;
        }
        self.bits[id as usize / 64] |= 1 << (id % 64);
        true
    }

    /// Disables `id`. Returns whether the set changed.
    pub fn disable(&mut self, id: u16) -> bool {
        if !self.is_enabled(id) {
            return false;
        }
        self.bits[id as usize / 64] &= !(1 << (id % 64));
        true
    }

    /// Whether method `id` may be called. Ids outside the table are not enabled.
    pub fn is_enabled(&self, id: u16) -> bool {
        id < self.count && self.bits[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// The enabled ids, ascending.
    pub fn enabled(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.count).filter(|&id| self.is_enabled(id))
    }

    /// Appends the whole `FEATURES` message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(KIND_FEATURES);
        out.extend_from_slice(&self.count.to_le_bytes());
        let nbytes = (self.count as usize).div_ceil(8);
        for i in 0..nbytes {
            let word = self.bits[i / 8];
            out.push((word >> ((i % 8) * 8)) as u8);
        }
    }

    /// Parses the body of a `FEATURES` message (after the kind byte).
    pub fn decode(body: &[u8]) -> Result<Self, FeaturesFormatError> {
        if body.len() < 2 {
            return Err(FeaturesFormatError("truncated count"));
        }
        let count = u16::from_le_bytes([body[0], body[1]]);
        let bitmap = &body[2..];
        if bitmap.len() != (count as usize).div_ceil(8) {
            return Err(FeaturesFormatError("bitmap length does not match the method count"));
        }
        let mut s = Self::none(count as usize);
        for (i, byte) in bitmap.iter().enumerate() {
            s.bits[i / 8] |= (*byte as u64) << ((i % 8) * 8);
        }
        if !count.is_multiple_of(64) {
            let last = s.bits.len() - 1;
            if s.bits[last] >> (count % 64) != 0 {
                return Err(FeaturesFormatError("bits set beyond the method count"));
            }
        }
        Ok(s)
    }
}

/// A malformed `FEATURES` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed features message: {0}")]
pub struct FeaturesFormatError(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for count in [0usize, 1, 7, 8, 9, 63, 64, 65, 300] {
            let s = FeatureSet::only(count, (0..count as u16).filter(|i| i % 3 == 0));
            let mut out = Vec::new();
            s.encode(&mut out);
            assert_eq!(out[0], KIND_FEATURES);
            assert_eq!(out.len(), 3 + count.div_ceil(8));
            assert_eq!(FeatureSet::decode(&out[1..]).unwrap(), s);
        }
    }

    #[test]
    fn bit_layout_is_lsb_first() {
        let s = FeatureSet::only(10, [0, 9]);
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(out, vec![0x21, 10, 0, 0b0000_0001, 0b0000_0010]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(FeatureSet::decode(&[1]).is_err());
        assert!(FeatureSet::decode(&[9, 0, 0]).is_err(), "bitmap too short");
        assert!(FeatureSet::decode(&[3, 0, 0b1000]).is_err(), "bit beyond count");
    }
}
