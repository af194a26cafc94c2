//! tiller-data: record types and their on-disk formats, chat templates, tokenization,
//! masking, batching and packing. Never links libtorch.

pub mod batch;
pub mod chat_template;
pub mod dataset;
pub mod error;
pub mod hh_rlhf;
pub mod order;
pub mod paired;
pub mod records;
pub mod row;
mod row_fields;
pub mod table;
pub mod tokenize;
pub mod tokenizer;

pub use batch::{
    collate, pack_batch, pad_batch, pad_pairs, Collation, PackedBatch, PaddedBatch, Segment,
};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use dataset::{load_preferences, load_sft, load_unpaired, LoadReport};
pub use error::{DataError, Result};
pub use order::{epoch_order, BatchSampler, DataPosition, OrderConfig};
pub use paired::{
    tokenize_preference, tokenize_preference_whole, tokenize_unpaired, PairOptions, TokenizedPair,
    TokenizedUnpaired,
};
pub use records::{
    load_records, save_records, Loaded, OnBadRow, PreferenceRecord, PromptRecord, Record,
    SftRecord, Turns, UnpairedRecord,
};
pub use row::{read_rows, write_rows, Row};
pub use table::{read_table, write_table, JsonRow, RowLocation, RowPosition};
pub use tokenize::{
    tokenize_loaded, tokenize_prompt, tokenize_sft, LossOn, TokenizeOptions, TokenizedExample,
    IGNORE_INDEX,
};
pub use tokenizer::Tokenizer;

/// Lower-case hex of bytes (a digest, a token): the one encoding every crate writes hashes in.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
