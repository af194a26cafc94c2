//! Preallocated key/value cache for incremental decoding. Keys and values of each layer
//! live in (b, kv_heads, capacity, head_dim) buffers; `len` positions are filled.

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;

#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(cfg: &LlamaConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> Self {
        let shape = [
            batch,
            cfg.num_kv_heads() as i64,
            capacity,
            cfg.head_dim() as i64,
        ];
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| {
                (
                    Tensor::zeros(shape, (kind, device)),
                    Tensor::zeros(shape, (kind, device)),
                )
            })
            .collect();
        KvCache {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Positions already in the cache.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Writes this step's `k`, `v` (b, kv, t, d) for `layer` after the filled positions and
    /// returns views of everything so far, (b, kv, len + t, d).
    pub(crate) fn update(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let (k_buf, v_buf) = &mut self.layers[layer];
        k_buf.narrow(2, self.len, t).copy_(k);
        v_buf.narrow(2, self.len, t).copy_(v);
        (
            k_buf.narrow(2, 0, self.len + t),
            v_buf.narrow(2, 0, self.len + t),
        )
    }

    /// Marks `t` more positions as filled; called once per forward, after every layer.
    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }
}
