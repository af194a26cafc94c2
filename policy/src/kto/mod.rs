//! KTO: alignment from unpaired `prompt`/`completion`/`label` feedback. The loss only, for
//! now; the trainer follows the DPO one.

pub mod loss;

pub use loss::{kto_loss, KtoInputs, KtoLossParts, KtoParams};
