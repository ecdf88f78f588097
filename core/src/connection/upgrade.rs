//! The handshake phase: the upgrade request in, the 101 (or a refusal) out.
//!
//! The core parses the request and applies the version rule; the driver's
//! connection factory decides between [`ServerConnection::accept`] and
//! [`ServerConnection::refuse`]. The handshake timeout (which also covers a
//! TLS handshake the core never sees) is the driver's.

use super::*;

impl ServerConnection {
    /// Accepts the upgrade delivered by [`Event::Upgrade`]. In RPC mode the
    /// `LIMITS` message follows the 101 at once, before anything else.
    pub fn accept(&mut self, req: &UpgradeRequest) {
        if self.phase == Phase::AwaitingAccept {
            req.write_accept(&mut self.out);
            self.phase = Phase::Open;
            if self.mode == Mode::Rpc {
                let limits = envelope::AnnouncedLimits {
                    max_message_size: u32::try_from(self.limits.max_message_size).unwrap_or(u32::MAX),
                    flags: envelope::FLAG_DEADLINE_AND_CANCEL,
                };
                frame::write_header(&mut self.out, true, Opcode::Binary, envelope::LIMITS_LEN, None);
                self.out.extend_from_slice(&limits.encode());
            }
        }
    }

    /// Refuses the upgrade delivered by [`Event::Upgrade`] with an HTTP status.
    pub fn refuse(&mut self, status: u16, reason: &str) {
        if self.phase == Phase::AwaitingAccept {
            HandshakeError::Refused(status, reason.to_string()).write_response(&mut self.out);
            self.phase = Phase::Closed;
            self.pending_close = Some(CloseReason::Refused);
        }
    }

    pub(super) fn poll_handshake(&mut self) -> Option<Event<'_>> {
        let data = &self.inbuf[self.in_start..self.in_end];
        let subprotocol = match self.mode {
            Mode::Rpc => Some(handshake::SUBPROTOCOL),
            Mode::Echo => None,
        };
        match handshake::parse_request_for(data, self.limits.max_handshake_size, self.limits.max_headers, subprotocol) {
            Ok(None) => None,
            Ok(Some((req, used))) => {
                self.in_start += used;
                self.phase = Phase::AwaitingAccept;
                Some(Event::Upgrade(req))
            }
            Err(e) => {
                e.write_response(&mut self.out);
                self.phase = Phase::Closed;
                self.pending_close = Some(CloseReason::Refused);
                Some(Event::HandshakeFailed(e))
            }
        }
    }
}
