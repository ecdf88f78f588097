//! The envelope decoders on arbitrary messages.
#![no_main]

use hardlight_core::envelope::{self, ClientMessage, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ClientMessage::Call { id, method, input }) = envelope::decode_client(data) {
        // What decodes re-encodes to the same bytes.
        let mut again = Vec::new();
        envelope::encode_call(&mut again, id, method, input);
        assert_eq!(again, data);
    }
    match envelope::decode_server(data) {
        Ok(ServerMessage::Result { payload, .. }) => assert_eq!(payload.len() + 2, data.len()),
        Ok(ServerMessage::CallError { detail, .. }) => assert_eq!(detail.len() + 3, data.len()),
        Ok(ServerMessage::Other { body, .. }) => assert_eq!(body.len() + 1, data.len()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
