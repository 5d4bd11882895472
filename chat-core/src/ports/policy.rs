use async_trait::async_trait;

use crate::error::Error;
use crate::ids::UserId;

/// Who may reach whom: a host's own rule on top of the chat's ("only members of the
/// same team", say), asked by `ChatService` before a send or a typing indicator, and
/// before it shows one user's presence to another.
///
/// Blocks hold whatever the policy answers: between two users either of whom blocked
/// the other, nothing is sent and nothing is shown. The policy can only narrow what
/// remains, or widen who sees presence beyond the people one talks with.
///
/// # Contract
///
/// - **Messaging.** `may_message(sender, receiver)`: whether `sender` may send
///   `receiver` a message, and show them that it is typing. `false` refuses the send
///   with `Error::Forbidden` and a neutral reason (nothing is stored or announced) and
///   drops the typing indicator.
/// - **Seeing.** `may_see(watcher, user, acquainted)`: whether `watcher` may see
///   `user`'s presence (online, last seen). `acquainted` says whether the two have a
///   conversation. `false` shows `user` to `watcher` as offline and never seen,
///   exactly like a stranger.
/// - **Cost.** Both are asked on request paths (every send, every presence lookup),
///   so answer from memory or a cache where possible.
/// - **Errors.** An error refuses the send (`Error::Unavailable` answers 503) and
///   hides the presence: a policy that cannot answer never lets anything through.
#[async_trait]
pub trait Policy: Send + Sync + 'static {
    /// Whether `sender` may send `receiver` a message.
    async fn may_message(&self, sender: UserId, receiver: UserId) -> Result<bool, Error>;

    /// Whether `watcher` may see `user`'s presence; `acquainted` when they have a
    /// conversation.
    async fn may_see(&self, watcher: UserId, user: UserId, acquainted: bool)
    -> Result<bool, Error>;
}

/// The chat's own policy, in force when a host sets none: anyone may message anyone
/// and show them typing (blocks aside), and presence is shown to the people one has
/// a conversation with.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPolicy;

#[async_trait]
impl Policy for DefaultPolicy {
    async fn may_message(&self, _: UserId, _: UserId) -> Result<bool, Error> {
        Ok(true)
    }

    async fn may_see(&self, _: UserId, _: UserId, acquainted: bool) -> Result<bool, Error> {
        Ok(acquainted)
    }
}
