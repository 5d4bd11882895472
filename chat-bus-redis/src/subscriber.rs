//! The node's receiving side: one RESP3 connection subscribed to the topic of every
//! user with a local subscriber, and the task that keeps those subscriptions right.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chat_core::UserId;
use chat_core::memory::InProcessNotifier;
use redis::aio::{AsyncPushSender, ConnectionManager, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use crate::health::Health;
use crate::wire;

/// Most topics in one SUBSCRIBE or UNSUBSCRIBE.
const CHUNK: usize = 1_000;
/// The first wait before trying Redis again, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// What the subscriptions task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// A user has a new local subscriber: make sure its topic is subscribed, then answer.
    /// Without an answer channel the subscriber was answered at once (Redis was away),
    /// and gets a gap once the topic is subscribed.
    Want(UserId, Option<oneshot::Sender<()>>),
    /// A local subscriber of the user is gone: unsubscribe if it was the last.
    Release(UserId),
}

/// Topic names under the deployment's prefix.
#[derive(Clone, Debug)]
pub(crate) struct Topics {
    prefix: String,
}

impl Topics {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn user(&self, user: UserId) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// Where a node that could not publish says so once it can again.
    pub(crate) fn gap(&self) -> String {
        format!("{}:gap", self.prefix)
    }
}

/// Receives what Redis pushes on the subscribing connection and hands it to the local
/// subscribers at once (it never waits: the connection's reader calls it).
pub(crate) struct PushHandler {
    pub(crate) node: u64,
    pub(crate) gap_topic: Vec<u8>,
    pub(crate) local: InProcessNotifier,
    pub(crate) disconnected: mpsc::UnboundedSender<()>,
}

impl AsyncPushSender for PushHandler {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Message => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(topic)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    return Ok(());
                };
                if topic == self.gap_topic {
                    if payload != self.node.to_string().as_bytes() {
                        self.local.gap_all();
                    }
                } else if let Some((node, user, event)) = wire::decode(&payload) {
                    // This node's own events reached its subscribers when published.
                    if node != self.node {
                        self.local.deliver(user, &event);
                    }
                } else {
                    // Something this version cannot read (a newer node's kind of event
                    // during a rolling upgrade, say): the feeds re-read the store
                    // rather than miss it.
                    self.local.gap_all();
                }
            }
            PushKind::Disconnection => {
                let _ = self.disconnected.send(());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Keeps the subscribing connection's topics equal to the users with local
/// subscribers, until every command sender is gone.
///
/// After the connection dropped, it tries Redis again (100 ms, doubling to 1 s) until
/// the topics of every local user are subscribed once more, and then gives every local
/// subscriber a gap: whatever was published meanwhile is read from the store.
pub(crate) struct SubscriptionTask {
    pub(crate) connection: ConnectionManager,
    pub(crate) topics: Topics,
    pub(crate) local: InProcessNotifier,
    pub(crate) health: Arc<Health>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) disconnected: mpsc::UnboundedReceiver<()>,
}

impl SubscriptionTask {
    pub(crate) async fn run(mut self) {
        let mut subscribed = HashSet::new();
        let mut retry = FIRST_RETRY;
        let mut pending = Vec::new();
        // Nothing is subscribed yet, not even the gap topic.
        let mut lost = true;
        // Whether a stream may have missed events: it was subscribed before the
        // connection dropped, or answered while Redis was away.
        let mut owe_gap = false;
        loop {
            if lost {
                match self.recover().await {
                    Ok(users) => {
                        subscribed = users;
                        retry = FIRST_RETRY;
                        lost = false;
                        self.health.set_subscriber(true, &"recovered");
                        if std::mem::take(&mut owe_gap) {
                            self.local.gap_all();
                        }
                    }
                    Err(error) => {
                        self.health.set_subscriber(false, &error);
                        // A stream may have gone live locally while Redis was away
                        // (also before this task first reached it).
                        owe_gap = true;
                        // Answer what comes meanwhile (streams work locally, and get
                        // their gap on recovery), then try again.
                        let wait = tokio::time::sleep(retry);
                        tokio::pin!(wait);
                        retry = (retry * 2).min(MAX_RETRY);
                        loop {
                            tokio::select! {
                                () = &mut wait => break,
                                command = self.commands.recv() => match command {
                                    None => return,
                                    Some(Command::Want(_, done)) => {
                                        owe_gap = true;
                                        if let Some(done) = done {
                                            let _ = done.send(());
                                        }
                                    }
                                    Some(Command::Release(_)) => {}
                                },
                                Some(()) = self.disconnected.recv() => {}
                            }
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                received = self.commands.recv_many(&mut pending, CHUNK) => {
                    if received == 0 {
                        return;
                    }
                    if let Err(error) = self.apply(&mut pending, &mut subscribed).await {
                        self.health.set_subscriber(false, &error);
                        lost = true;
                        owe_gap = true;
                    }
                }
                Some(()) = self.disconnected.recv() => {
                    self.health.set_subscriber(false, &"the connection to Redis closed");
                    lost = true;
                    owe_gap = true;
                }
            }
        }
    }

    /// Subscribes the gap topic and every local user's topic; the users subscribed.
    async fn recover(&mut self) -> redis::RedisResult<HashSet<UserId>> {
        self.connection.subscribe(self.topics.gap()).await?;
        let users = self.local.subscribed_users();
        for chunk in users.chunks(CHUNK) {
            let topics: Vec<String> = chunk.iter().map(|user| self.topics.user(*user)).collect();
            self.connection.subscribe(topics).await?;
        }
        Ok(users.into_iter().collect())
    }

    /// Subscribes what is wanted and not yet subscribed, unsubscribes the users without
    /// local subscribers, then answers the wants (also on failure: the streams work
    /// locally, and a gap follows the recovery).
    async fn apply(
        &mut self,
        pending: &mut Vec<Command>,
        subscribed: &mut HashSet<UserId>,
    ) -> redis::RedisResult<()> {
        let mut wanted = HashSet::new();
        let mut answers = Vec::new();
        let mut released = HashSet::new();
        let mut answered_early = false;
        for command in pending.drain(..) {
            match command {
                Command::Want(user, done) => {
                    if subscribed.insert(user) {
                        wanted.insert(user);
                    }
                    match done {
                        Some(done) => answers.push(done),
                        // Answered before its topic was known to be subscribed.
                        None => answered_early = true,
                    }
                }
                Command::Release(user) => {
                    if self.local.subscriber_count(user) == 0 && subscribed.remove(&user) {
                        released.insert(user);
                    }
                }
            }
        }
        // One batch may release a user and want it again (or the other way round):
        // what Redis is told follows where each user ended, since every SUBSCRIBE is
        // sent before every UNSUBSCRIBE.
        let wanted: Vec<String> = wanted
            .into_iter()
            .filter(|user| subscribed.contains(user))
            .map(|user| self.topics.user(user))
            .collect();
        let released: Vec<String> = released
            .into_iter()
            .filter(|user| !subscribed.contains(user))
            .map(|user| self.topics.user(user))
            .collect();
        let result = async {
            if !wanted.is_empty() {
                self.connection.subscribe(&wanted).await?;
            }
            if !released.is_empty() {
                self.connection.unsubscribe(&released).await?;
            }
            Ok(())
        }
        .await;
        for done in answers {
            let _ = done.send(());
        }
        if result.is_ok() && answered_early {
            // Streams that went live before their topic was subscribed.
            self.local.gap_all();
        }
        result
    }
}
