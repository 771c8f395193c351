//! Placeholder until the layer's benchmark is written.
#![allow(missing_docs)]
fn main() {}
