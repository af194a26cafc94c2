//! tiller-data: record types and their on-disk formats, chat templates, tokenization,
//! masking, batching and packing. Never links libtorch.

pub mod chat_template;
pub mod error;
pub mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use error::{DataError, Result};
pub use tokenizer::Tokenizer;
