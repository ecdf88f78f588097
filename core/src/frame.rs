//! WebSocket framing (RFC 6455 section 5): frame headers, masking, control frames.
//!
//! The server reads frames in place from its receive buffer instead of going
//! through tungstenite's message API, because that API allocates a buffer per
//! message; here the payload is unmasked straight into a reused aligned buffer,
//! which also fixes rkyv's alignment in the same pass.

use thiserror::Error;

/// Opcode of a WebSocket frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: text; HardLight refuses these with close code 1003.
    Text,
    /// 0x2: binary; every HardLight message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest frame header: 2 bytes, 8-byte extended length, 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// Frame type.
    pub opcode: Opcode,
    /// Masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Bytes taken by the header itself.
    pub header_len: usize,
}

/// Framing rules a peer broke. Each maps to close code 1002 except where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits set in frame header (no extension was negotiated)")]
    ReservedBits,
    /// An opcode outside the RFC's set.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with FIN clear or more than 125 bytes.
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    /// A client frame without the mask bit (RFC 6455 5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// A server frame with the mask bit (RFC 6455 5.1).
    #[error("server frame masked")]
    Masked,
    /// A 64-bit length with its top bit set.
    #[error("frame length has the most significant bit set")]
    LengthOverflow,
    /// A frame longer than the configured message limit (close 1009).
    #[error("frame of {0} bytes exceeds the message size limit")]
    TooBig(u64),
}

/// Which side of the connection is parsing: servers require masked frames,
/// clients require unmasked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Parsing frames sent by a client.
    Server,
    /// Parsing frames sent by a server.
    Client,
}

/// Parses a frame header from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. Rejects frames whose length
/// exceeds `max_payload` before any of the payload is buffered.
pub fn parse_header(buf: &[u8], role: Role, max_payload: usize) -> Result<Option<FrameHeader>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(FrameError::ReservedOpcode(b0 & 0x0f))?;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(FrameError::Unmasked),
        (Role::Client, true) => return Err(FrameError::Masked),
        _ => {}
    }
    let len7 = b1 & 0x7f;
    let (payload_len, mut at) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(FrameError::LengthOverflow);
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    if opcode.is_control() && (!fin || payload_len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::BadControlFrame);
    }
    if payload_len > max_payload as u64 {
        return Err(FrameError::TooBig(payload_len));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader { fin, opcode, mask, payload_len, header_len: at }))
}

/// XORs `buf` with `mask` starting at key position `offset` (the number of
/// payload bytes of this frame already unmasked), so a frame can be unmasked
/// in pieces as it arrives.
pub fn apply_mask_at(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let r = offset & 3;
    apply_mask(buf, [mask[r], mask[(r + 1) & 3], mask[(r + 2) & 3], mask[(r + 3) & 3]]);
}

/// XORs `buf` with `mask` in place (masking and unmasking are the same operation).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Writes a frame header for a payload of `len` bytes. Server frames pass
/// `mask: None`; client frames must pass a fresh random key.
pub fn write_header(out: &mut Vec<u8>, fin: bool, opcode: Opcode, len: usize, mask: Option<[u8; 4]>) {
    let b0 = (if fin { 0x80 } else { 0 }) | opcode.as_u8();
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// Appends a whole unmasked (server-to-client) frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    write_header(out, true, opcode, payload.len(), None);
    out.extend_from_slice(payload);
}

/// Appends a whole masked (client-to-server) frame.
pub fn write_masked_frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    write_header(out, fin, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Builds a close frame payload: the code, then a UTF-8 reason truncated to fit 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> ([u8; MAX_CONTROL_PAYLOAD], usize) {
    let mut p = [0u8; MAX_CONTROL_PAYLOAD];
    p[..2].copy_from_slice(&code.to_be_bytes());
    let mut r = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(r) {
        r -= 1;
    }
    p[2..2 + r].copy_from_slice(&reason.as_bytes()[..r]);
    (p, 2 + r)
}

/// Close codes a peer may legitimately send (RFC 6455 7.4).
pub fn is_valid_received_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_small_masked_binary() {
        let mut out = Vec::new();
        write_masked_frame(&mut out, true, Opcode::Binary, b"hello", [1, 2, 3, 4]);
        let h = parse_header(&out, Role::Server, 1024).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Binary);
        assert!(h.fin);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.header_len, 6);
        let mut body = out[6..].to_vec();
        apply_mask_at(&mut body, h.mask.unwrap(), 0);
        assert_eq!(body, b"hello");
    }

    #[test]
    fn extended_lengths_round_trip() {
        for len in [125usize, 126, 65535, 65536, 100_000] {
            let mut out = Vec::new();
            write_header(&mut out, true, Opcode::Binary, len, Some([0; 4]));
            let h = parse_header(&out, Role::Server, 1 << 20).unwrap().unwrap();
            assert_eq!(h.payload_len, len as u64);
            assert_eq!(h.header_len, out.len());
            // Every strict prefix asks for more bytes instead of guessing.
            for cut in 0..out.len() {
                assert_eq!(parse_header(&out[..cut], Role::Server, 1 << 20), Ok(None));
            }
        }
    }

    #[test]
    fn rejects_rule_breaking_frames() {
        assert_eq!(parse_header(&[0x82, 0x00], Role::Server, 10), Err(FrameError::Unmasked));
        assert_eq!(parse_header(&[0x82, 0x80], Role::Client, 10), Err(FrameError::Masked));
        assert_eq!(parse_header(&[0xC2, 0x80], Role::Server, 10), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x83, 0x80], Role::Server, 10), Err(FrameError::ReservedOpcode(3)));
        assert_eq!(parse_header(&[0x09, 0x80], Role::Server, 10), Err(FrameError::BadControlFrame));
        assert_eq!(parse_header(&[0x89, 0xFE, 0, 126], Role::Server, 1000), Err(FrameError::BadControlFrame));
        let mut big = vec![0x82, 0xFF];
        big.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_header(&big, Role::Server, 10), Err(FrameError::LengthOverflow));
        assert_eq!(parse_header(&[0x82, 0xFE, 0x01, 0x00], Role::Server, 255), Err(FrameError::TooBig(256)));
    }

    #[test]
    fn mask_is_an_involution_at_any_length() {
        for len in 0..20 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut b = orig.clone();
            apply_mask(&mut b, [9, 8, 7, 6]);
            let mut pieces = b.clone();
            let (a, rest) = pieces.split_at_mut(len / 3);
            apply_mask_at(a, [9, 8, 7, 6], 0);
            apply_mask_at(rest, [9, 8, 7, 6], len / 3);
            assert_eq!(pieces, orig);
            apply_mask(&mut b, [9, 8, 7, 6]);
            assert_eq!(b, orig);
        }
    }

    #[test]
    fn close_reason_truncates_on_char_boundary() {
        let reason = "é".repeat(100);
        let (p, n) = close_payload(1000, &reason);
        assert!(n <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&p[2..n]).is_ok());
    }
}
