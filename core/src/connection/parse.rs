//! The message phase: frames in, events out.
//!
//! Parses frame headers, reassembles and unmasks data into the aligned
//! message buffer, answers control frames, and turns complete messages into
//! [`Event`]s. Everything here is driven by [`ServerConnection::poll_event`].

use super::*;

impl ServerConnection {
    /// Processes buffered input until something needs the driver.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some(reason) = self.pending_close.take() {
            self.observe_closed(&reason);
            return Some(Event::Closed(reason));
        }
        if let Some(id) = self.cancelled.pop_front() {
            return Some(Event::Cancel { id });
        }
        loop {
            match self.phase {
                Phase::Closed | Phase::AwaitingAccept => return None,
                Phase::Handshake => return self.poll_handshake(),
                Phase::Open | Phase::Closing(_) => {}
            }
            match self.step() {
                Step::NeedMore => return None,
                Step::Continue => continue,
                Step::Closed(reason) => {
                    self.observe_closed(&reason);
                    return Some(Event::Closed(reason));
                }
                Step::Message { text } => match self.mode {
                    Mode::Rpc => {
                        // Borrow ends before the next loop iteration on every path that continues.
                        if let Some((id, method, timeout_ms)) = self.take_call() {
                            let end = self.msg.len() - timeout_ms.map_or(0, |_| envelope::DEADLINE_TRAILER_LEN);
                            let input = &self.msg[MSG_PAD + envelope::CALL_HEADER_LEN..end];
                            let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
                            return Some(Event::Call { id, method, input, timeout });
                        }
                        if let Some(id) = self.cancelled.pop_front() {
                            return Some(Event::Cancel { id });
                        }
                    }
                    Mode::Echo => {
                        if self.phase == Phase::Open {
                            return Some(Event::Message { text, payload: &self.msg[MSG_PAD..] });
                        }
                    }
                },
            }
        }
    }

    /// Examines the message in `msg` (a complete binary message). Returns the
    /// call to deliver, or `None` if it was answered here or dropped.
    fn take_call(&mut self) -> Option<(u8, u16, Option<u32>)> {
        let closing = !matches!(self.phase, Phase::Open);
        let body = &self.msg[MSG_PAD..];
        match envelope::decode_client(body) {
            Ok(ClientMessage::Resume { body }) => {
                if closing {
                    return None;
                }
                if !matches!(self.resume, ResumeSlot::Waiting) {
                    self.close(CloseCode::MalformedEnvelope, "RESUME is only accepted as the first message");
                    return None;
                }
                match crate::resume::parse_resume(body) {
                    Ok(positions) => self.resume = ResumeSlot::Ready(positions),
                    Err(e) => self.close(CloseCode::MalformedEnvelope, &e.to_string()),
                }
                None
            }
            Ok(ClientMessage::Cancel { id }) => {
                if !closing {
                    self.cancel(id, CallErrorCode::Cancelled, "cancelled by the client");
                }
                None
            }
            Ok(ClientMessage::Call { id, method, timeout_ms, .. }) => {
                if closing {
                    return None;
                }
                if matches!(self.resume, ResumeSlot::Waiting) {
                    self.resume = ResumeSlot::Ready(Default::default());
                }
                self.stats.calls_received += 1;
                if !self.calls.begin(id) {
                    self.observe_refused(method, CallErrorCode::DuplicateCallId);
                    self.write_call_error(
                        id,
                        CallErrorCode::DuplicateCallId,
                        "call id is already in flight; wait for its response before reusing it",
                    );
                    return None;
                }
                self.observe_start(id, method);
                if self.draining {
                    self.fail(id, CallErrorCode::ShuttingDown, "server is shutting down");
                    return None;
                }
                // Refused before the input is even decoded.
                if let Some((code, detail)) = self.refusal(method) {
                    self.fail(id, code, &detail);
                    return None;
                }
                if let Some(ms) = timeout_ms {
                    self.time.add_deadline(id, ms);
                }
                Some((id, method, timeout_ms))
            }
            Err(e) => {
                if !closing {
                    let reason = e.to_string();
                    self.close(CloseCode::MalformedEnvelope, &reason);
                }
                None
            }
        }
    }

    fn protocol_close(&mut self, code: CloseCode, reason: &str) -> Step {
        self.close(code, reason);
        // Nothing more from this peer is trusted; stop parsing but keep
        // reading so the peer gets a clean closing handshake.
        self.in_start = self.in_end;
        self.data = None;
        self.msg_opcode = None;
        self.msg.resize(MSG_PAD, 0);
        Step::Continue
    }

    fn step(&mut self) -> Step {
        if let Some(df) = self.data {
            return self.step_data(df);
        }
        let avail = &self.inbuf[self.in_start..self.in_end];
        let current = if self.msg_opcode.is_some() { self.msg.len() - MSG_PAD } else { 0 };
        let room = self.limits.max_message_size.saturating_sub(current);
        let hdr = match frame::parse_header(avail, Role::Server, usize::MAX) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::NeedMore,
            Err(e) => return self.frame_error(e),
        };
        if matches!(self.phase, Phase::Closing(_)) && !hdr.opcode.is_control() {
            // Discard data after our Close, but parse it to find the peer's Close.
            return self.skip_frame(hdr);
        }
        match hdr.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => self.step_control(hdr),
            Opcode::Text if self.mode == Mode::Rpc => {
                self.protocol_close(CloseCode::UnsupportedData, "HardLight accepts binary messages only")
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                match (hdr.opcode, self.msg_opcode) {
                    (Opcode::Text | Opcode::Binary, Some(_)) => {
                        return self.protocol_close(
                            CloseCode::ProtocolError,
                            "new message started before the previous one finished",
                        )
                    }
                    (Opcode::Continuation, None) => {
                        return self.protocol_close(
                            CloseCode::ProtocolError,
                            "continuation frame without a message in progress",
                        )
                    }
                    _ => {}
                }
                if hdr.payload_len > room as u64 {
                    // Refused from the header alone. Skip the payload as it
                    // arrives (never buffer it) so that the peer's Close,
                    // which follows it, is still read.
                    self.in_start += hdr.header_len;
                    self.msg_opcode = None;
                    self.close(CloseCode::MessageTooBig, "message exceeds the size limit");
                    self.data =
                        Some(DataFrame { mask: [0; 4], remaining: hdr.payload_len, done: 0, fin: true, skip: true });
                    return Step::Continue;
                }
                if self.msg_opcode.is_none() {
                    self.msg.resize(MSG_PAD, 0);
                    self.msg_opcode = Some(hdr.opcode);
                    self.utf8_valid = 0;
                }
                self.in_start += hdr.header_len;
                let df = DataFrame {
                    mask: hdr.mask.unwrap_or([0; 4]),
                    remaining: hdr.payload_len,
                    done: 0,
                    fin: hdr.fin,
                    skip: false,
                };
                self.data = Some(df);
                self.step_data(df)
            }
        }
    }

    fn skip_frame(&mut self, hdr: FrameHeader) -> Step {
        let avail = self.in_end - self.in_start;
        let total = hdr.header_len as u64 + hdr.payload_len;
        if (avail as u64) < total {
            // Drop what we have of it; remember how much is left to skip.
            self.in_start = self.in_end;
            self.data =
                Some(DataFrame { mask: [0; 4], remaining: total - avail as u64, done: 0, fin: false, skip: true });
            return Step::NeedMore;
        }
        self.in_start += total as usize;
        Step::Continue
    }

    fn step_data(&mut self, mut df: DataFrame) -> Step {
        let avail = self.in_end - self.in_start;
        let take = (df.remaining.min(avail as u64)) as usize;
        if df.skip {
            self.in_start += take;
            df.remaining -= take as u64;
            self.data = if df.remaining == 0 { None } else { Some(df) };
            return if df.remaining == 0 { Step::Continue } else { Step::NeedMore };
        }
        let src = &self.inbuf[self.in_start..self.in_start + take];
        let at = self.msg.len();
        self.msg.extend_from_slice(src);
        frame::apply_mask_at(&mut self.msg[at..], df.mask, df.done);
        self.in_start += take;
        df.done += take;
        df.remaining -= take as u64;
        // Fail fast: check text as it arrives, not when the message ends.
        if self.msg_opcode == Some(Opcode::Text) && !self.check_utf8(df.fin && df.remaining == 0) {
            return self.protocol_close(CloseCode::InvalidPayload, "text message is not valid UTF-8");
        }
        if df.remaining > 0 {
            self.data = Some(df);
            return Step::NeedMore;
        }
        self.data = None;
        if !df.fin {
            return Step::Continue;
        }
        // The message stays in `msg` until the next message starts.
        let text = self.msg_opcode.take() == Some(Opcode::Text);
        self.stats.messages_received += 1;
        Step::Message { text }
    }

    /// Extends the validated prefix of the text message in `msg`. False if
    /// the bytes so far cannot begin valid UTF-8, or, once the message is
    /// `complete`, if it ends inside a character.
    fn check_utf8(&mut self, complete: bool) -> bool {
        let unchecked = &self.msg[MSG_PAD + self.utf8_valid..];
        match std::str::from_utf8(unchecked) {
            Ok(_) => {
                self.utf8_valid += unchecked.len();
                true
            }
            Err(e) => {
                self.utf8_valid += e.valid_up_to();
                // `error_len() == None`: the input ends inside a character
                // that more bytes may still complete.
                e.error_len().is_none() && !complete
            }
        }
    }

    fn step_control(&mut self, hdr: FrameHeader) -> Step {
        let total = hdr.header_len + hdr.payload_len as usize;
        if self.in_end - self.in_start < total {
            return Step::NeedMore;
        }
        let mut payload = [0u8; frame::MAX_CONTROL_PAYLOAD];
        let n = hdr.payload_len as usize;
        payload[..n].copy_from_slice(&self.inbuf[self.in_start + hdr.header_len..self.in_start + total]);
        frame::apply_mask(&mut payload[..n], hdr.mask.unwrap_or([0; 4]));
        self.in_start += total;
        let payload = &payload[..n];
        match hdr.opcode {
            Opcode::Ping => {
                if self.phase == Phase::Open {
                    frame::write_frame(&mut self.out, Opcode::Pong, payload);
                }
                Step::Continue
            }
            Opcode::Pong => Step::Continue,
            _ => self.on_close_frame(payload),
        }
    }

    fn on_close_frame(&mut self, payload: &[u8]) -> Step {
        let (code, echo) = match payload.len() {
            0 => (1005, None),
            1 => (1002, Some((CloseCode::ProtocolError, "close frame with a 1-byte payload"))),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !frame::is_valid_received_close_code(code) {
                    (code, Some((CloseCode::ProtocolError, "invalid close code")))
                } else if std::str::from_utf8(&payload[2..]).is_err() {
                    (code, Some((CloseCode::InvalidPayload, "close reason is not UTF-8")))
                } else {
                    (code, None)
                }
            }
        };
        let reason = match self.phase {
            Phase::Closing(ours) => CloseReason::ByUs(ours),
            _ => {
                let (echo_code, text) =
                    echo.unwrap_or((CloseCode::from_u16(if code == 1005 { 1000 } else { code }), ""));
                let (p, n) = frame::close_payload(echo_code.as_u16(), text);
                frame::write_frame(&mut self.out, Opcode::Close, &p[..n]);
                CloseReason::ByPeer(code)
            }
        };
        self.phase = Phase::Closed;
        self.in_start = self.in_end;
        Step::Closed(reason)
    }

    fn frame_error(&mut self, e: FrameError) -> Step {
        let code = match e {
            FrameError::TooBig(_) => CloseCode::MessageTooBig,
            _ => CloseCode::ProtocolError,
        };
        if matches!(self.phase, Phase::Closing(_)) {
            // Already closing: give up on the peer.
            self.phase = Phase::Closed;
            self.in_start = self.in_end;
            return Step::Closed(CloseReason::ByUs(code));
        }
        let reason = e.to_string();
        self.protocol_close(code, &reason)
    }
}

enum Step {
    NeedMore,
    Continue,
    /// A complete message is in `msg`.
    Message {
        text: bool,
    },
    Closed(CloseReason),
}
