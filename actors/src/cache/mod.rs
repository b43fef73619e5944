mod actor;
pub mod key;

pub use actor::*;
