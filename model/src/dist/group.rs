//! The c10d process group (binding of csrc/c10d.cpp): rank 0 serves a TCPStore at
//! `MASTER_ADDR:MASTER_PORT`, every rank joins it, and Gloo (CPU) or NCCL (CUDA) runs
//! the collectives. Gradients travel in flat buckets of [`BUCKET_BYTES`], as DDP does.
//!
//! Naming the rank that failed: Gloo reports a dead peer as "connection closed by
//! 127.0.0.1:port", which names no rank. So every rank keeps a heartbeat in the store
//! (a counter its C++ thread bumps every 0.5 s) and records its collective count there
//! before each collective; when one fails, the survivors watch the others' heartbeats
//! for 2 s: a rank whose heartbeat stopped is gone, a live one whose count is behind
//! hangs elsewhere. If the store itself is gone, rank 0 (its host) is the one that died.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;
use std::time::Duration;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::dist::{Collective, World};
use crate::error::{ModelError, Result};

/// The flat bucket size of gradient all-reduces (DDP's default `bucket_cap_mb = 25`).
pub const BUCKET_BYTES: i64 = 25 * 1024 * 1024;
/// How long a survivor waits for each peer's store entries after a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a survivor watches the peers' heartbeats (csrc/c10d.cpp beats every 0.5 s).
const HEARTBEAT_PROBE: Duration = Duration::from_millis(2000);

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn tiller_c10d_init(
        host: *const c_char,
        port: i32,
        rank: i32,
        world_size: i32,
        init_timeout_ms: i64,
        timeout_ms: i64,
        cuda_device: i32,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn tiller_c10d_all_reduce(
        group: *mut c_void,
        tensors: *const *mut C_tensor,
        n: i64,
        average: i32,
        bucket_bytes: i64,
    ) -> *mut c_char;
    fn tiller_c10d_broadcast(
        group: *mut c_void,
        tensors: *const *mut C_tensor,
        n: i64,
        root: i32,
        bucket_bytes: i64,
    ) -> *mut c_char;
    fn tiller_c10d_reduce_scatter(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
    ) -> *mut c_char;
    fn tiller_c10d_all_gather(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
    ) -> *mut c_char;
    fn tiller_c10d_barrier(group: *mut c_void) -> *mut c_char;
    fn tiller_c10d_store_set(
        group: *mut c_void,
        key: *const c_char,
        value: *const u8,
        len: i64,
    ) -> *mut c_char;
    fn tiller_c10d_store_get(
        group: *mut c_void,
        key: *const c_char,
        timeout_ms: i64,
        value: *mut *mut u8,
        len: *mut i64,
    ) -> *mut c_char;
    fn tiller_c10d_destroy(group: *mut c_void);
}

/// Which c10d backend runs the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors, over TCP.
    Gloo,
    /// CUDA tensors on this device index.
    Nccl { device: usize },
}

/// The shim's group handle; the mutex serializes calls (c10d work is issued in order).
struct Handle(*mut c_void);

// SAFETY: the handle is only used under `ProcessGroup::inner`'s mutex, one call at a time.
unsafe impl Send for Handle {}

struct Inner {
    handle: Handle,
    /// Collectives started so far (this rank's entry in the store).
    count: u64,
}

/// A rank's membership of a c10d process group. Dropping it leaves the group.
pub struct ProcessGroup {
    inner: Mutex<Inner>,
    rank: usize,
    world_size: usize,
    device: Device,
    /// `addr:port` of the store, for messages.
    master: String,
}

/// Turns the shim's returned message (null = success) into a Result.
fn check(error: *mut c_char) -> std::result::Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from strdup, freed here once.
    let message = unsafe {
        let message = CStr::from_ptr(error).to_string_lossy().into_owned();
        libc::free(error.cast());
        message
    };
    Err(message)
}

fn pointers(tensors: &[Tensor]) -> Vec<*mut C_tensor> {
    tensors
        .iter()
        .map(|t| t.as_ptr() as *mut C_tensor)
        .collect()
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl ProcessGroup {
    /// Joins the job `world` describes: rank 0 starts the store, every rank connects
    /// within `world.init_timeout`, and later collectives wait at most `world.timeout`.
    pub fn join(world: &World, backend: Backend) -> Result<ProcessGroup> {
        let master = format!("{}:{}", world.master_addr, world.master_port);
        let fail = |message: String| {
            ModelError::Distributed(format!(
                "rank {} of {}: cannot join the group at {master}: {message}",
                world.rank, world.world_size
            ))
        };
        let host = CString::new(world.master_addr.as_str())
            .map_err(|_| fail("MASTER_ADDR contains a NUL byte".into()))?;
        let (cuda, device) = match backend {
            Backend::Gloo => (-1, Device::Cpu),
            Backend::Nccl { device } => (device as i32, Device::Cuda(device)),
        };
        let mut handle = std::ptr::null_mut();
        // SAFETY: `host` outlives the call; the shim writes `handle` only on success.
        let error = unsafe {
            tiller_c10d_init(
                host.as_ptr(),
                i32::from(world.master_port),
                world.rank as i32,
                world.world_size as i32,
                millis(world.init_timeout),
                millis(world.timeout),
                cuda,
                &mut handle,
            )
        };
        check(error).map_err(|m| {
            if m.contains("EADDRINUSE") {
                fail(format!(
                    "port {} is already in use (MASTER_PORT): {m}",
                    world.master_port
                ))
            } else if m.contains("timed out") || m.contains("Timed out") {
                fail(format!(
                    "not every rank joined within {:.0} s ({}): {m}",
                    world.init_timeout.as_secs_f64(),
                    crate::dist::INIT_TIMEOUT_VAR
                ))
            } else {
                fail(m)
            }
        })?;
        let group = ProcessGroup {
            inner: Mutex::new(Inner {
                handle: Handle(handle),
                count: 0,
            }),
            rank: world.rank,
            world_size: world.world_size,
            device,
            master,
        };
        group
            .store_set(&count_key(world.rank), b"0")
            .map_err(|m| group.error(m))?;
        Ok(group)
    }

    /// The device collectives run on (CPU for Gloo, `cuda:N` for NCCL).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Checks that every rank passes the same `value` (say the hash of the resolved
    /// config), naming the ranks that differ from rank 0.
    pub fn check_same(&self, what: &str, value: &str) -> Result<()> {
        self.store_set(
            &format!("tiller/same/{what}/{}", self.rank),
            value.as_bytes(),
        )
        .map_err(|m| self.error(m))?;
        let timeout = Duration::from_secs(60);
        let mut values = Vec::with_capacity(self.world_size);
        for r in 0..self.world_size {
            let v = self
                .store_get(&format!("tiller/same/{what}/{r}"), timeout)
                .map_err(|m| self.error(format!("rank {r} did not report its {what}: {m}")))?;
            values.push(String::from_utf8_lossy(&v).into_owned());
        }
        let differ: Vec<String> = (1..self.world_size)
            .filter(|&r| values[r] != values[0])
            .map(|r| format!("rank {r} has {}", values[r]))
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(self.error(format!(
            "the ranks disagree on the {what}: rank 0 has {}, {}; every rank must run the same command and config",
            values[0],
            differ.join(", ")
        )))
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Distributed(format!(
            "rank {} of {}: {message}",
            self.rank, self.world_size
        ))
    }

    fn store_set(&self, key: &str, value: &[u8]) -> std::result::Result<(), String> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| "the group's lock is poisoned".to_owned())?;
        let key = CString::new(key).map_err(|_| "store key contains NUL".to_owned())?;
        // SAFETY: the handle is live (dropped only in Drop); key and value outlive the call.
        check(unsafe {
            tiller_c10d_store_set(
                inner.handle.0,
                key.as_ptr(),
                value.as_ptr(),
                value.len() as i64,
            )
        })
    }

    fn store_get(&self, key: &str, timeout: Duration) -> std::result::Result<Vec<u8>, String> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| "the group's lock is poisoned".to_owned())?;
        let key = CString::new(key).map_err(|_| "store key contains NUL".to_owned())?;
        let (mut value, mut len) = (std::ptr::null_mut(), 0i64);
        // SAFETY: as in store_set; on success `value` is a malloc'd buffer of `len` bytes.
        check(unsafe {
            tiller_c10d_store_get(
                inner.handle.0,
                key.as_ptr(),
                millis(timeout),
                &mut value,
                &mut len,
            )
        })?;
        // SAFETY: the buffer holds `len` bytes and is freed once, here.
        let bytes = unsafe {
            let bytes = std::slice::from_raw_parts(value, len as usize).to_vec();
            libc::free(value.cast());
            bytes
        };
        Ok(bytes)
    }

    /// Runs one collective: records this rank's count, calls the shim, and on failure
    /// names the ranks that did not reach it.
    fn collective(&self, what: &str, call: impl FnOnce(*mut c_void) -> *mut c_char) -> Result<()> {
        let count = {
            let mut inner = self
                .inner
                .lock()
                .map_err(|_| self.error("the group's lock is poisoned".into()))?;
            inner.count += 1;
            inner.count
        };
        if let Err(m) = self.store_set(&count_key(self.rank), count.to_string().as_bytes()) {
            return Err(self.error(format!(
                "{what} #{count}: the rendezvous store at {} is unreachable, so rank 0 (its host) has exited or hangs: {m}",
                self.master
            )));
        }
        let result = {
            let inner = self
                .inner
                .lock()
                .map_err(|_| self.error("the group's lock is poisoned".into()))?;
            check(call(inner.handle.0))
        };
        result.map_err(|m| {
            self.error(format!(
                "{what} #{count} failed: {}: {m}",
                self.culprits(count)
            ))
        })
    }

    /// Which peers are gone (their heartbeat stopped) or never reached collective
    /// `count` (alive but elsewhere: hung), read from their store entries.
    fn culprits(&self, count: u64) -> String {
        let gone = || {
            format!(
                "the rendezvous store at {} is gone, so rank 0 (its host) has exited",
                self.master
            )
        };
        let peers: Vec<usize> = (0..self.world_size).filter(|&r| r != self.rank).collect();
        let read = |key: String| -> Option<u64> {
            let v = self.store_get(&key, PROBE_TIMEOUT).ok()?;
            Some(String::from_utf8_lossy(&v).trim().parse().unwrap_or(0))
        };
        let beats = |peers: &[usize]| -> Option<Vec<u64>> {
            peers
                .iter()
                .map(|&r| read(format!("tiller/alive/{r}")))
                .collect()
        };
        let Some(before) = beats(&peers) else {
            return gone();
        };
        std::thread::sleep(HEARTBEAT_PROBE);
        let Some(after) = beats(&peers) else {
            return gone();
        };
        let mut found = Vec::new();
        for (i, &r) in peers.iter().enumerate() {
            let reached = read(count_key(r)).unwrap_or(0);
            if after[i] == before[i] {
                found.push(format!(
                    "rank {r} stopped (no heartbeat for {:.1} s: it exited, was killed or lost its machine; its last collective was #{reached})",
                    HEARTBEAT_PROBE.as_secs_f64()
                ));
            } else if reached < count {
                found.push(format!(
                    "rank {r} is alive but never reached it (still at collective #{reached}): it hangs or runs different code"
                ));
            }
        }
        if found.is_empty() {
            "every rank reached it and is alive".into()
        } else {
            found.join("; ")
        }
    }

    fn reduce(&self, tensors: &[Tensor], average: bool) -> Result<()> {
        let p = pointers(tensors);
        // SAFETY: the pointers are live tch tensors borrowed for the call.
        self.collective("all-reduce", |g| unsafe {
            tiller_c10d_all_reduce(
                g,
                p.as_ptr(),
                p.len() as i64,
                i32::from(average),
                BUCKET_BYTES,
            )
        })
    }
}

/// Checks that `output` and `input` are the flat, contiguous pair a reduce-scatter or
/// all-gather over `world` ranks needs: one dtype, `input` `world` times `output`'s length
/// for a reduce-scatter (`scatter`), the other way round for an all-gather.
fn check_flat_pair(
    what: &str,
    output: &Tensor,
    input: &Tensor,
    world: usize,
    scatter: bool,
) -> Result<()> {
    let (long, short) = if scatter {
        (input, output)
    } else {
        (output, input)
    };
    let flat = |t: &Tensor| t.dim() == 1 && t.is_contiguous();
    if !flat(output)
        || !flat(input)
        || output.kind() != input.kind()
        || long.numel() != short.numel() * world
    {
        return Err(ModelError::InvalidArgument(format!(
            "{what}: needs flat contiguous tensors of one dtype, the long one {world} times the short one; got output {:?} {:?} and input {:?} {:?}",
            output.size(), output.kind(), input.size(), input.kind()
        )));
    }
    Ok(())
}

fn count_key(rank: usize) -> String {
    format!("tiller/collectives/{rank}")
}

impl Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        self.reduce(tensors, true)
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let t = Tensor::from_slice(values)
            .to_kind(Kind::Double)
            .to_device(self.device);
        self.reduce(std::slice::from_ref(&t), false)?;
        let summed = Vec::<f64>::try_from(t.to_device(Device::Cpu))?;
        values.copy_from_slice(&summed);
        Ok(())
    }
    fn broadcast(&self, tensors: &[Tensor]) -> Result<()> {
        let p = pointers(tensors);
        // SAFETY: as in `reduce`.
        self.collective("broadcast", |g| unsafe {
            tiller_c10d_broadcast(g, p.as_ptr(), p.len() as i64, 0, BUCKET_BYTES)
        })
    }
    fn reduce_scatter_sum(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        check_flat_pair("reduce-scatter", output, input, self.world_size, true)?;
        let (o, i) = (
            output.as_ptr() as *mut C_tensor,
            input.as_ptr() as *mut C_tensor,
        );
        // SAFETY: both pointers are live tch tensors borrowed for the call.
        self.collective("reduce-scatter", |g| unsafe {
            tiller_c10d_reduce_scatter(g, o, i)
        })
    }
    fn all_gather(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        check_flat_pair("all-gather", output, input, self.world_size, false)?;
        let (o, i) = (
            output.as_ptr() as *mut C_tensor,
            input.as_ptr() as *mut C_tensor,
        );
        // SAFETY: as in `reduce_scatter_sum`.
        self.collective("all-gather", |g| unsafe { tiller_c10d_all_gather(g, o, i) })
    }
    fn barrier(&self) -> Result<()> {
        // SAFETY: the handle is live for the call.
        self.collective("barrier", |g| unsafe { tiller_c10d_barrier(g) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Ok(inner) = self.inner.get_mut() {
            // SAFETY: the handle came from tiller_c10d_init and is destroyed once.
            unsafe { tiller_c10d_destroy(inner.handle.0) };
        }
    }
}
