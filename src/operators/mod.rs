//! Dataflow operators: record preparation with pre-aggregation (`prepare`) and the event-time
//! window operator that emits each (window, key) exactly once (`window`).

pub mod prepare;
pub mod window;
