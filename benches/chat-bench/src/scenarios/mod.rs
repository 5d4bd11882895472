//! One module per scenario.

pub(crate) mod deliver;
pub(crate) mod idle;
