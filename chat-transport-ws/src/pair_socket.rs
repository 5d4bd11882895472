//! A [`WsSocket`] made of any sink and stream of WebSocket messages: to drive a
//! session over channels (tests, a host's own transport) instead of a network socket.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use tokio::time::Instant;
use tungstenite::{Error as WsError, Message as WsMessage};

use crate::closing::WsSocket;

/// A sink for the frames the server writes and a stream of the frames the client
/// sends, used as one socket.
///
/// ```
/// use futures::channel::mpsc;
/// use chat_transport_ws::PairSocket;
/// use tungstenite::{Error, Message};
///
/// let (to_client, from_server) = mpsc::channel::<Message>(64);
/// let (to_server, from_client) = mpsc::channel::<Result<Message, Error>>(64);
/// let socket = PairSocket::new(to_client, from_client);
/// # let _ = (socket, from_server, to_server);
/// ```
#[derive(Debug)]
pub struct PairSocket<Si, St> {
    sink: Si,
    stream: St,
}

impl<Si, St> PairSocket<Si, St> {
    /// A socket writing to `sink` and reading from `stream`.
    pub fn new(sink: Si, stream: St) -> Self {
        Self { sink, stream }
    }
}

impl<Si: Unpin, St> Stream for PairSocket<Si, St>
where
    St: Stream<Item = Result<WsMessage, WsError>> + Unpin,
{
    type Item = Result<WsMessage, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// The sink's own errors all mean that the other side is gone.
fn closed<E>(_: E) -> WsError {
    WsError::ConnectionClosed
}

impl<Si, St: Unpin> Sink<WsMessage> for PairSocket<Si, St>
where
    Si: Sink<WsMessage> + Unpin,
{
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.sink).poll_ready(cx).map_err(closed)
    }

    fn start_send(mut self: Pin<&mut Self>, item: WsMessage) -> Result<(), WsError> {
        Pin::new(&mut self.sink).start_send(item).map_err(closed)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.sink).poll_flush(cx).map_err(closed)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.sink).poll_close(cx).map_err(closed)
    }
}

impl<Si, St> WsSocket for PairSocket<Si, St>
where
    Si: Sink<WsMessage> + Unpin + Send,
    St: Stream<Item = Result<WsMessage, WsError>> + Unpin + Send,
{
    /// There are no raw bytes under a stream of frames: frames are discarded instead.
    async fn discard_input(&mut self, quiet: Duration, deadline: Instant) {
        loop {
            let until = deadline.min(Instant::now() + quiet);
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }
}
