//! GGUF, both ways: the container reader and writer, (de)quantization, the HF ↔ llama.cpp
//! tensor layout, and conversion of a checkpoint and its tokenizer in each direction.

pub mod dequant;
pub mod export;
pub mod import;
pub mod layout;
pub mod q4_k;
pub mod quant;
pub mod reader;
pub mod tokenizer;
pub mod tokenizer_export;
pub mod writer;

pub use dequant::{dequantize, GgmlType};
pub use export::{export_gguf, ExportSummary, ExportType};
pub use import::import_gguf;
pub use reader::{GgufFile, MetadataValue, TensorInfo};
pub use writer::GgufWriter;
