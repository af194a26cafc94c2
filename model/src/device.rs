//! Device and precision choices shared by every command.

use tch::{Device, Kind};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    Bf16,
}

impl DType {
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::Bf16 => Kind::BFloat16,
        }
    }
}

impl std::str::FromStr for DType {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            other => Err(ModelError::InvalidArgument(format!(
                "unknown dtype `{other}` (f32, bf16)"
            ))),
        }
    }
}

/// "cpu", "cuda" or "cuda:N". CUDA must actually be usable, or this is an error.
pub fn parse_device(s: &str) -> Result<Device> {
    let index = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => i,
            None => {
                return Err(ModelError::InvalidArgument(format!(
                    "unknown device `{other}` (cpu, cuda, cuda:N)"
                )))
            }
        },
    };
    load_cuda_backend();
    if !tch::Cuda::is_available() {
        return Err(ModelError::InvalidArgument(
            "--device cuda: libtorch reports no usable CUDA device (is libtorch_cuda.so on the library path and a GPU present?)".into(),
        ));
    }
    if index >= tch::Cuda::device_count() as usize {
        return Err(ModelError::InvalidArgument(format!(
            "--device {s}: only {} CUDA device(s) present",
            tch::Cuda::device_count()
        )));
    }
    Ok(Device::Cuda(index))
}

/// The linker drops libtorch_cuda.so when no symbol of it is referenced (`--as-needed`),
/// and without it libtorch registers no CUDA backend. Loading it explicitly restores it;
/// failure is left to `Cuda::is_available` to report.
fn load_cuda_backend() {
    for name in [c"libtorch_cuda.so", c"libtorch_cuda_cu.so"] {
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally kept.
        unsafe {
            libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        }
    }
}

/// Keeps memory that tensors free inside the process instead of handing it back to the
/// kernel. glibc serves every allocation above its mmap threshold (activations, gradients)
/// with a fresh mapping and unmaps it on free, so a training step that allocates the same
/// large tensors as the last one makes the kernel zero new pages again (~8% of a
/// reward-training profile). Served from the heap and never trimmed, the next step reuses
/// those pages. The tensors alive at the peak are the same, so peak memory barely moves;
/// memory freed after the peak stays with the process until it exits. Skipped when
/// `GLIBC_TUNABLES` is set: whoever set it chose their own allocator settings.
pub fn keep_freed_memory() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
