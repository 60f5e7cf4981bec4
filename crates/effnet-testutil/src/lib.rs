//! # effnet-testutil
//!
//! What effnet's test suites share, in one dev-only crate instead of source files included
//! across crates by path: small real-image data sets written into temporary folders
//! ([`data`]: the UCI digits, three textures, the tiny recipe) and a local stand-in for the
//! Hugging Face Hub ([`hub_server`]).

pub mod data;
pub mod hub_server;

pub use data::*;
