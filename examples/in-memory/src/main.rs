//! Run with: cargo run -p example-in-memory
//!
//! Alice and Bob chat through `ChatService` on the in-memory adapters: Alice's device
//! listens for events, Bob reads, and the history and receipts are printed.

use chat::{ChatService, Event, HistoryQuery, Notice, SendMessage, UserId};
use futures_util::{FutureExt, StreamExt};

#[tokio::main]
async fn main() -> Result<(), chat::Error> {
    let chat = ChatService::in_memory();
    let (alice, bob) = (UserId::new(1), UserId::new(2));
    // Alice's phone: every event for Alice (her receipts among them) arrives here.
    let mut alice_events = chat.subscribe(alice).await?;

    let to = |receiver_id, text: &str| SendMessage {
        receiver_id,
        message: text.into(),
        client_message_id: None,
    };
    let hello = chat.send(alice, to(bob, "Hello, Bob!")).await?.message;
    chat.send(alice, to(bob, "Lunch at noon?")).await?;
    chat.send(bob, to(alice, "Noon works.")).await?;
    println!("Bob has {} unread", chat.unread_total(bob).await?);

    // Bob's device confirms the first one, then Bob reads the whole conversation.
    chat.mark_messages_delivered(bob, &[hello.id]).await?;
    let read = chat.mark_conversation_read(bob, alice, None).await?;
    println!(
        "Bob read {read} messages; now {} unread",
        chat.unread_total(bob).await?
    );

    let page = HistoryQuery::Page {
        page: 1,
        per_page: 20,
    };
    println!("\nHistory, oldest first:");
    for m in chat.history(alice, bob, page).await?.messages.iter().rev() {
        println!(
            "  #{} {} -> {}: {:?} [{}]",
            m.id, m.sender_id, m.receiver_id, m.message, m.status
        );
    }

    println!("\nWhat Alice's phone received:");
    // Events are queued before `send` returns: take what is there, without waiting.
    while let Some(Some(event)) = alice_events.next().now_or_never() {
        match event {
            Notice::Event(Event::Message(m)) => {
                println!("  message #{} from {}: {:?}", m.id, m.sender_id, m.message)
            }
            Notice::Event(Event::Receipt(r)) => println!("  receipt: #{} is {}", r.id, r.status),
            other => println!("  {other:?}"),
        }
    }
    Ok(())
}
