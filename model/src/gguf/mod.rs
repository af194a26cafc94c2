//! GGUF import: the container reader, dequantization, and conversion to an HF directory.

pub mod dequant;
pub mod import;
pub mod reader;
pub mod tokenizer;

pub use dequant::{dequantize, GgmlType};
pub use import::import_gguf;
pub use reader::{GgufFile, MetadataValue, TensorInfo};
