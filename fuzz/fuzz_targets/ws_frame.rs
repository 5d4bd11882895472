//! Arbitrary bytes as one inbound WebSocket text frame of an authenticated session:
//! the WebSocket layer's UTF-8 check, the `ClientFrame` decoder, the checks made before
//! the service is called, and the answer frame. Never a panic, never a hang, never an
//! `internal` error; a frame that is not UTF-8 closes with 1007 and nothing else closes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chat_fuzz::ws::client()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .exchange(data);
});
