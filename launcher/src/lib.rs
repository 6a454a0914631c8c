//! The `warble` command's library half: demo data for `warble dev --demo`.
//! The stack itself lives in `warble-stack` (shared with the tests and `warble bench`).

pub mod demo;
