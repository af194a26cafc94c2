//! GGUF v3 container writer, the mirror of [`crate::gguf::reader`]: header, metadata
//! key/values, tensor descriptors, then each tensor's bytes at a 32-byte aligned offset
//! (`general.alignment`'s default, which llama.cpp and gguf-py assume when it is absent).
//! The file is written under a temporary name, fsynced and renamed, so a crash never
//! leaves a half-written `.gguf` that looks complete.

use std::io::Write;
use std::path::Path;

use crate::atomic;
use crate::error::{ModelError, Result};
use crate::gguf::dequant::GgmlType;
use crate::gguf::reader::MetadataValue;

pub const GGUF_VERSION: u32 = 3;
pub const ALIGNMENT: u64 = 32;

impl MetadataValue {
    /// GGUF's value type id (the reader's `value` match, inverted). An empty array is
    /// written as an array of strings: its element type is not recorded in memory, and
    /// the only empty arrays Tiller writes are string lists (merges of a byte tokenizer).
    fn type_id(&self) -> u32 {
        match self {
            MetadataValue::U8(_) => 0,
            MetadataValue::I8(_) => 1,
            MetadataValue::U16(_) => 2,
            MetadataValue::I16(_) => 3,
            MetadataValue::U32(_) => 4,
            MetadataValue::I32(_) => 5,
            MetadataValue::F32(_) => 6,
            MetadataValue::Bool(_) => 7,
            MetadataValue::String(_) => 8,
            MetadataValue::Array(_) => 9,
            MetadataValue::U64(_) => 10,
            MetadataValue::I64(_) => 11,
            MetadataValue::F64(_) => 12,
        }
    }

    fn encode(&self, key: &str, out: &mut Vec<u8>) -> Result<()> {
        match self {
            MetadataValue::U8(v) => out.push(*v),
            MetadataValue::I8(v) => out.extend(v.to_le_bytes()),
            MetadataValue::U16(v) => out.extend(v.to_le_bytes()),
            MetadataValue::I16(v) => out.extend(v.to_le_bytes()),
            MetadataValue::U32(v) => out.extend(v.to_le_bytes()),
            MetadataValue::I32(v) => out.extend(v.to_le_bytes()),
            MetadataValue::U64(v) => out.extend(v.to_le_bytes()),
            MetadataValue::I64(v) => out.extend(v.to_le_bytes()),
            MetadataValue::F32(v) => out.extend(v.to_le_bytes()),
            MetadataValue::F64(v) => out.extend(v.to_le_bytes()),
            MetadataValue::Bool(v) => out.push(u8::from(*v)),
            MetadataValue::String(s) => put_string(out, s),
            MetadataValue::Array(items) => {
                let item_type = items.first().map_or(8, MetadataValue::type_id);
                if items
                    .iter()
                    .any(|v| v.type_id() != item_type || item_type == 9)
                {
                    return Err(ModelError::InvalidArgument(format!(
                        "GGUF metadata `{key}`: an array's items must share one non-array type"
                    )));
                }
                out.extend(item_type.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(key, out)?;
                }
            }
        }
        Ok(())
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

struct PendingTensor {
    name: String,
    /// GGML order: dims[0] is a row's length.
    dims: Vec<u64>,
    ggml_type: GgmlType,
    bytes: Vec<u8>,
}

/// A GGUF file being assembled in memory; [`GgufWriter::write`] puts it on disk.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a metadata key; keys keep the order they were first added in.
    pub fn set(&mut self, key: &str, value: MetadataValue) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
    }

    /// Adds a tensor whose `bytes` hold its values as `ggml_type`; `dims` in GGML order.
    /// The byte count must be what the shape and type imply.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: Vec<u64>,
        ggml_type: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let elements: u64 = dims.iter().product();
        let expected = dims
            .first()
            .and_then(|&row| ggml_type.byte_size(elements, row));
        if dims.is_empty() || dims.len() > 4 || expected != Some(bytes.len() as u64) {
            return Err(ModelError::InvalidArgument(format!(
                "GGUF tensor `{name}`: {} bytes do not hold shape {dims:?} as {ggml_type:?}",
                bytes.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(ModelError::InvalidArgument(format!(
                "GGUF tensor `{name}` is added twice"
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims,
            ggml_type,
            bytes,
        });
        Ok(())
    }

    /// The header, metadata and tensor descriptors: everything before the data section.
    fn header(&self) -> Result<Vec<u8>> {
        let mut out = b"GGUF".to_vec();
        out.extend(GGUF_VERSION.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            value.encode(key, &mut out)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ggml_type.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = (offset + t.bytes.len() as u64).next_multiple_of(ALIGNMENT);
        }
        Ok(out)
    }

    /// Writes the file atomically (temporary name, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let header = self.header()?;
        atomic::write_file(path, |tmp| {
            let file = std::fs::File::create(tmp).map_err(|e| ModelError::io(path, e))?;
            self.write_data(&header, file)
                .map_err(|e| ModelError::io(path, e))
        })
    }

    /// The header, then every tensor's bytes, each padded to [`ALIGNMENT`].
    fn write_data(&self, header: &[u8], file: std::fs::File) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        let mut put = |out: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| {
            out.write_all(bytes)?;
            written += bytes.len() as u64;
            let padding = written.next_multiple_of(ALIGNMENT) - written;
            written += padding;
            out.write_all(&vec![0u8; padding as usize])
        };
        put(&mut out, header)?;
        for t in &self.tensors {
            put(&mut out, &t.bytes)?;
        }
        out.flush()
    }
}
