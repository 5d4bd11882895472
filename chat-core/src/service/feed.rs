//! The live feed: what one device of a user receives, in order, none missed.
//!
//! Every transport delivers through a [`Feed`]: it subscribes to the notifier before
//! anything is read from the store, hands out the backlog, and then follows the
//! notifier's events, reading the new messages from the store in id order. An event
//! is only news that something is there; the store says what. A gap in the events
//! therefore costs one more read, never a message.

use std::future::poll_fn;

use super::ChatService;
use crate::error::Error;
use crate::event::{Event, Receipt, Typing};
use crate::ids::{MessageId, UserId};
use crate::message::FeedEntry;
use crate::ports::{EventStream, Notice};

/// Where a device's feed starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// Every message to the user that no device has confirmed yet (the undelivered
    /// backlog), then every message to or from the user committed after the feed
    /// opened.
    Undelivered,
    /// Every message to or from the user after this id, and every change (edit,
    /// deletion) to an older one made since: a device resuming with the largest id or
    /// revision it received.
    After(MessageId),
}

/// What a feed has for its device next.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedUpdate {
    /// Messages or changes are waiting: take them with [`Feed::next_page`] until it
    /// returns none.
    Messages,
    /// A message the user sent was delivered or read.
    Receipt(Receipt),
    /// The counterpart is typing.
    Typing(Typing),
    /// The feed cannot go on: its events fell too far behind and were dropped. The
    /// device reconnects with the largest id or revision it received and misses
    /// nothing.
    Ended,
}

/// The messages and events one device of a user must receive.
///
/// Opened with [`ChatService::open_feed`]. Entries come out of [`next_page`] in
/// position order, each once: first the backlog, then whatever is newer, each time
/// [`next_update`] says there is more. A new message stands at its id, an edit or
/// deletion of an older one at its revision (the same sequence). [`cursor`] is then
/// a safe resume point: every message and change of the user's up to it has been
/// handed out (or, for [`FeedStart::Undelivered`], was delivered before the feed
/// opened).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use chat_core::{ChatService, FeedStart, FeedUpdate, SendMessage, UserId};
///
/// let chat = ChatService::in_memory();
/// let (alice, bob) = (UserId::new(1), UserId::new(2));
/// let mut bobs_phone = chat.open_feed(bob, FeedStart::Undelivered, 100).await?;
/// let hello = SendMessage { receiver_id: bob, message: "Hi".into(), client_message_id: None };
/// chat.send(alice, hello).await?;
/// // A transport's loop: wait for an update, then take the messages page by page.
/// let mut received = Vec::new();
/// while received.is_empty() {
///     assert_eq!(bobs_phone.next_update().await, FeedUpdate::Messages);
///     loop {
///         let page = bobs_phone.next_page().await?;
///         if page.is_empty() {
///             break;
///         }
///         received.extend(page);
///     }
/// }
/// assert_eq!(received[0].message().message, "Hi");
/// assert_eq!(bobs_phone.cursor(), received[0].position());
/// # Ok::<(), chat_core::Error>(())
/// # }).unwrap();
/// ```
///
/// [`next_page`]: Feed::next_page
/// [`next_update`]: Feed::next_update
/// [`cursor`]: Feed::cursor
pub struct Feed {
    chat: ChatService,
    user: UserId,
    notices: EventStream,
    /// Every message and change of the user's up to this position has been handed
    /// out, or was there before an `Undelivered` feed opened.
    cursor: MessageId,
    /// While the undelivered backlog is being handed out: where its next page starts.
    backlog: Option<MessageId>,
    /// The store may hold messages after the cursor that were not handed out.
    behind: bool,
    batch: u32,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("user", &self.user)
            .field("cursor", &self.cursor)
            .field("backlog", &self.backlog)
            .field("behind", &self.behind)
            .finish_non_exhaustive()
    }
}

impl ChatService {
    /// Opens the feed of one device of `user`, reading the store `batch` (1–1000)
    /// messages at a time.
    ///
    /// Call it before telling the device it is connected (before a WebSocket handshake
    /// is answered): the feed subscribes first and then fixes its starting point, so a
    /// message committed once this returns reaches the device.
    pub async fn open_feed(
        &self,
        user: UserId,
        start: FeedStart,
        batch: u32,
    ) -> Result<Feed, Error> {
        let after = match start {
            FeedStart::After(after) => after,
            FeedStart::Undelivered => MessageId::new(0),
        };
        Self::check_backlog(user, after, batch)?;
        let notices = self.notifier.subscribe(user).await?;
        let (cursor, backlog, behind) = match start {
            FeedStart::After(after) => (after, None, true),
            // Subscribed already: whatever commits after this read arrives as an event.
            FeedStart::Undelivered => {
                let newest = self.repository.conversations(user, None, 1).await?;
                let newest = newest.first().map_or(after, |c| c.last_message.id);
                (newest, Some(MessageId::new(0)), false)
            }
        };
        Ok(Feed {
            chat: self.clone(),
            user,
            notices,
            cursor,
            backlog,
            behind,
            batch,
        })
    }
}

impl Feed {
    /// The service the feed reads from.
    pub fn chat(&self) -> &ChatService {
        &self.chat
    }

    /// The user whose feed this is.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// Every message and change of the user's up to this position (id or revision)
    /// has been handed out.
    pub fn cursor(&self) -> MessageId {
        self.cursor
    }

    /// Waits for what the device gets next. Cancel-safe: a call dropped before it
    /// returns loses nothing.
    ///
    /// Events of messages already handed out are skipped; [`FeedUpdate::Messages`] is
    /// answered at once while messages are waiting.
    pub async fn next_update(&mut self) -> FeedUpdate {
        loop {
            if self.behind || self.backlog.is_some() {
                return FeedUpdate::Messages;
            }
            let notice = poll_fn(|cx| self.notices.as_mut().poll_next(cx)).await;
            match notice {
                None => return FeedUpdate::Ended,
                Some(Notice::Gap) => self.behind = true,
                Some(Notice::Event(Event::Message(message))) => {
                    // Concurrent sends publish in any order: the event only says that
                    // the store has news after the cursor.
                    self.behind |= message.id > self.cursor;
                }
                Some(Notice::Event(Event::Changed(change))) => {
                    self.behind |= change.revision > self.cursor;
                }
                Some(Notice::Event(Event::Receipt(receipt))) => {
                    return FeedUpdate::Receipt(receipt);
                }
                Some(Notice::Event(Event::Typing(typing))) => {
                    return FeedUpdate::Typing(typing);
                }
            }
        }
    }

    /// The next entries for the device, in position order; empty when it has them all.
    ///
    /// The undelivered backlog comes first, then every message and change after the
    /// cursor. On an error the feed is unchanged and the call may be repeated.
    pub async fn next_page(&mut self) -> Result<Vec<FeedEntry>, Error> {
        if let Some(after) = self.backlog {
            let mut page = self.chat.undelivered(self.user, after, self.batch).await?;
            let full = page.len() == self.batch as usize;
            // Newer ones come below, in id order with the user's own messages.
            page.retain(|message| message.id <= self.cursor);
            self.backlog = match page.last() {
                Some(last) if full && page.len() == self.batch as usize => Some(last.id),
                _ => None,
            };
            if !page.is_empty() {
                return Ok(page.into_iter().map(FeedEntry::New).collect());
            }
        }
        if !self.behind {
            return Ok(Vec::new());
        }
        let page = self
            .chat
            .feed_after(self.user, self.cursor, self.batch)
            .await?;
        if let Some(last) = page.last() {
            self.cursor = last.position();
        }
        self.behind = page.len() == self.batch as usize;
        Ok(page)
    }

    /// Tells the feed of message `id`, just stored for this device's own request (its
    /// `send`), so it comes out of [`next_page`](Self::next_page) in its place; whether
    /// it is still to come (`false`: handed out already).
    pub fn expect(&mut self, id: MessageId) -> bool {
        let coming = id > self.cursor;
        self.behind |= coming;
        coming
    }
}
