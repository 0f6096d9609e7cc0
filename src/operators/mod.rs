//! Dataflow operators: record preparation with pre-aggregation (`prepare`) and the event-time
//! window operator that emits each (window, key) exactly once (`window`), and the session
//! operator that emits each session exactly once (`session`).

pub mod group_table;
pub mod prepare;
pub mod session;
pub mod window;
