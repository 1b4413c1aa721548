//! One module per subcommand.

pub mod common;
pub mod generate;
pub mod info;
