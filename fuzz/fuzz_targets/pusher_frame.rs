//! Arbitrary bytes through the Pusher side's parsers: a client frame, a presence
//! member's `channel_data`, and an HTTP API body (single and batch). Never a panic;
//! what parses keeps the rules its type promises (a valid channel name, data within
//! the limit).
#![no_main]

use chat_transport_pusher::protocol::ClientFrame;
use chat_transport_pusher::{Member, TriggerLimits, parse_batch, parse_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = TriggerLimits::default();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ClientFrame::Subscribe { channel, .. } | ClientFrame::Unsubscribe { channel }) =
            ClientFrame::parse(text)
        {
            assert!(channel.as_str().parse::<chat_transport_pusher::ChannelName>().is_ok());
        }
        let _ = Member::from_channel_data(text);
    }
    if let Ok(trigger) = parse_event(data, &limits) {
        assert!(trigger.data.len() <= limits.max_data_bytes);
        assert!(!trigger.channels.is_empty() && trigger.channels.len() <= limits.max_channels);
    }
    if let Ok(batch) = parse_batch(data, &limits) {
        assert!(batch.len() <= limits.max_batch);
    }
});
