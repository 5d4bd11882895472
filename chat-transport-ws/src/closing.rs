//! Closing a connection so the peer learns why.
//!
//! A server that drops a TCP socket with unread input makes the kernel send a reset,
//! and a reset can overtake the close frame: a client still sending (the rest of an
//! oversized message, a flood) then sees "connection reset" instead of the close
//! code. So after its close frame the server reads and discards input until the
//! peer's close, silence, or a short deadline, and only then lets the socket go.

use std::future::Future;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::config::close_code;

/// Longest wait for the close frame to be written, and for the closing handshake to
/// finish after it (discarding input meanwhile).
const WRITE_GRACE: Duration = Duration::from_secs(1);
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Silence that ends the discarding of raw input: the peer has stopped sending.
const QUIET: Duration = Duration::from_millis(250);

/// A WebSocket a session runs on: frames both ways, and raw input to discard once
/// the frame layer can read no more.
pub trait WsSocket:
    Stream<Item = Result<WsMessage, WsError>> + Sink<WsMessage, Error = WsError> + Unpin + Send
{
    /// Reads and discards raw input until the peer closes, stays silent for `quiet`,
    /// or `deadline` passes.
    fn discard_input(
        &mut self,
        quiet: Duration,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send;
}

impl<T> WsSocket for WebSocketStream<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn discard_input(&mut self, quiet: Duration, deadline: Instant) {
        let io = self.get_mut();
        // On the heap, and only while closing: idle connections stay small.
        let mut scratch = vec![0_u8; 8 * 1024];
        loop {
            let until = deadline.min(Instant::now() + quiet);
            match tokio::time::timeout_at(until, io.read(&mut scratch)).await {
                Ok(Ok(read)) if read > 0 => {}
                // Closed, failed, silent, or out of time.
                _ => return,
            }
        }
    }
}

/// How a session ended, and so how its socket is closed by [`close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The peer closed or went away: nothing to tell it.
    ByPeer,
    /// The server closes with this code and reason.
    Close {
        /// The close code.
        code: u16,
        /// The close reason, for people.
        reason: &'static str,
        /// The frame layer failed on the peer's input and can read no more, so
        /// what the peer still sends is discarded as raw bytes.
        input_failed: bool,
    },
}

impl Closing {
    /// The server closes with `code`; the peer's input can still be read as frames.
    pub fn with(code: u16, reason: &'static str) -> Self {
        Self::Close {
            code,
            reason,
            input_failed: false,
        }
    }

    /// The close for a failed read, by the WebSocket layer's error: 1009 for a message
    /// over the limit, 1007 for text that is not UTF-8, 1002 for a protocol error; a
    /// connection that merely failed is gone.
    pub fn after_read_error(error: &WsError) -> Self {
        match error {
            WsError::Capacity(_) => {
                Self::after_bad_input(close_code::MESSAGE_TOO_BIG, "message too big")
            }
            WsError::Utf8(_) => {
                Self::after_bad_input(close_code::INVALID_PAYLOAD, "text frames must be UTF-8")
            }
            WsError::Protocol(_) => {
                Self::after_bad_input(close_code::PROTOCOL_ERROR, "protocol error")
            }
            _ => {
                tracing::debug!(%error, "WebSocket read failed");
                Self::ByPeer
            }
        }
    }

    /// The server closes with `code` after the peer's input failed to decode.
    pub fn after_bad_input(code: u16, reason: &'static str) -> Self {
        Self::Close {
            code,
            reason,
            input_failed: true,
        }
    }
}

/// Finishes a connection as `closing` says, within a few seconds at most: the close
/// frame within `write_timeout` (at most a second), then the peer's input read and
/// discarded until it answers, so a reset cannot overtake the close code.
pub async fn close<S: WsSocket>(socket: &mut S, closing: Closing, write_timeout: Duration) {
    let write_grace = write_timeout.min(WRITE_GRACE);
    let Closing::Close {
        code,
        reason,
        input_failed,
    } = closing
    else {
        // Sends the answer to the peer's close frame, if it sent one.
        let _ = tokio::time::timeout(write_grace, socket.close()).await;
        return;
    };
    let frame = WsMessage::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }));
    // A peer that does not take the close frame in time is not reading at all (a slow
    // consumer): it is dropped without waiting any longer.
    if !matches!(
        tokio::time::timeout(write_grace, socket.send(frame)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let deadline = Instant::now() + DRAIN_GRACE;
    if !input_failed {
        // Frames still in flight are read and dropped until the peer's close answers
        // ours; a frame the layer cannot read leaves the rest to the raw discard.
        loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(Some(Ok(WsMessage::Close(_))) | None) | Err(_) => return,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => break,
            }
        }
    }
    socket.discard_input(QUIET, deadline).await;
}
