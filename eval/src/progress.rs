//! Progress of the long steps (answering prompts, scoring likelihoods), reported to whoever
//! runs the evaluation: the command line draws a bar on a terminal, tests stay silent.

/// Told when a step starts (with its size), as it advances, and when it ends.
pub trait Progress {
    fn start(&mut self, what: &str, total: u64);
    fn advance(&mut self, done: u64);
    fn finish(&mut self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _what: &str, _total: u64) {}
    fn advance(&mut self, _done: u64) {}
    fn finish(&mut self) {}
}
