//! One module per scenario.

pub(crate) mod catch_up;
pub(crate) mod deliver;
pub(crate) mod history;
pub(crate) mod idle;
pub(crate) mod limits;
pub(crate) mod pusher;
pub(crate) mod send;
pub(crate) mod webhook_receiver;
