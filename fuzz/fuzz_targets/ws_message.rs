//! WebSocket client messages (src/web/ws.rs): the bytes a viewer's browser sends once the
//! upgrade is done — frames as tungstenite decodes them with the session's limits, then
//! each text message through benchcam's parser. Never a panic; every text message is
//! either a command or an `error` reply with a code.
#![no_main]

use std::io::{Cursor, Read, Write};

use benchcam::web::ws::{config, parse_client_message, BadMessage, MAX_CLIENT_MESSAGE};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// Reads the fuzz input, swallows what the server writes.
struct Wire {
    input: Cursor<Vec<u8>>,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // A leading 0 byte: the rest is one text message as it arrives after decoding.
    if let Some((0, text)) = data.split_first() {
        if let Ok(text) = std::str::from_utf8(text) {
            check(text);
        }
        return;
    }
    let wire = Wire {
        input: Cursor::new(data.to_vec()),
    };
    let mut ws = WebSocket::from_raw_socket(wire, Role::Server, Some(config()));
    for _ in 0..64 {
        match ws.read() {
            Ok(Message::Text(text)) => {
                assert!(text.len() <= MAX_CLIENT_MESSAGE);
                check(text.as_str());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});

fn check(text: &str) {
    match parse_client_message(text) {
        Ok(_) => {}
        Err(BadMessage { code, message }) => {
            assert!(
                ["bad_json", "bad_message", "bad_quality", "bad_codec", "unknown_type"].contains(&code),
                "{code}"
            );
            assert!(!message.is_empty());
        }
    }
}
