//! Preallocated key/value cache for incremental decoding. Keys and values of each layer
//! live in (slots, kv_heads, capacity, head_dim) buffers; the first `rows` slots are in use
//! and row `i` has its first `lens[i]` positions filled.
//!
//! Two ways to use it:
//! - a fixed batch (`new`): every row has the same length, as a left-padded batch does;
//! - a running batch (the decode engine): rows of different lengths join (`push_rows`) and
//!   leave (`swap_remove`) between steps. Each row's keys start at position 0, so a row's
//!   numbers never depend on its neighbours; a one-token step writes each row's new key at
//!   its own length (one scatter per layer) and attention masks the unfilled tail.

use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;

#[derive(Debug)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    /// Filled positions of each row in use.
    lens: Vec<i64>,
    capacity: i64,
    /// Where this step's single token goes in each row, (rows, kv, 1, d); built by the
    /// first layer of a ragged step and reused by the others.
    step_index: Option<Tensor>,
}

impl KvCache {
    pub fn new(cfg: &LlamaConfig, batch: i64, capacity: i64, kind: Kind, device: Device) -> Self {
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Self::buffers(cfg, batch, capacity, kind, device))
            .collect();
        KvCache {
            layers,
            lens: vec![0; batch as usize],
            capacity,
            step_index: None,
        }
    }

    /// An empty running batch: no rows yet, room allocated on demand by `reserve`.
    pub fn empty(cfg: &LlamaConfig, kind: Kind, device: Device) -> Self {
        let mut cache = Self::new(cfg, 0, 0, kind, device);
        cache.lens.clear();
        cache
    }

    fn buffers(
        cfg: &LlamaConfig,
        slots: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> (Tensor, Tensor) {
        let shape = [
            slots,
            cfg.num_kv_heads() as i64,
            capacity,
            cfg.head_dim() as i64,
        ];
        (
            Tensor::zeros(shape, (kind, device)),
            Tensor::zeros(shape, (kind, device)),
        )
    }

    /// Positions in the longest row.
    pub fn len(&self) -> i64 {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Filled positions of each row in use.
    pub fn lens(&self) -> &[i64] {
        &self.lens
    }

    /// Rows in use.
    pub fn rows(&self) -> i64 {
        self.lens.len() as i64
    }

    fn slots(&self) -> i64 {
        self.layers.first().map_or(0, |(k, _)| k.size()[0])
    }

    fn uniform(&self) -> bool {
        self.lens.windows(2).all(|w| w[0] == w[1])
    }

    /// Makes room for `rows` rows of `capacity` positions, keeping what is filled. Grows
    /// geometrically so a running batch reallocates rarely.
    pub fn reserve(&mut self, rows: i64, capacity: i64) {
        let (slots, cap) = (self.slots(), self.capacity);
        if rows <= slots && capacity <= cap {
            return;
        }
        let new_slots = if rows > slots {
            rows.max(slots * 2)
        } else {
            slots
        };
        let new_cap = if capacity > cap {
            capacity.max(cap + cap / 2).max(16)
        } else {
            cap
        };
        let (used, filled) = (self.rows(), self.len());
        for (k, v) in &mut self.layers {
            let shape = k.size();
            let new_shape = [new_slots, shape[1], new_cap, shape[3]];
            let (nk, nv) = (
                Tensor::zeros(new_shape, (k.kind(), k.device())),
                Tensor::zeros(new_shape, (v.kind(), v.device())),
            );
            if used > 0 && filled > 0 {
                nk.narrow(0, 0, used)
                    .narrow(2, 0, filled)
                    .copy_(&k.narrow(0, 0, used).narrow(2, 0, filled));
                nv.narrow(0, 0, used)
                    .narrow(2, 0, filled)
                    .copy_(&v.narrow(0, 0, used).narrow(2, 0, filled));
            }
            *k = nk;
            *v = nv;
        }
        self.capacity = new_cap;
    }

    /// Appends `copies` rows, each a copy of row `row` of `src` (a prefilled prompt): the
    /// n samples of one prompt share its prefill.
    pub fn push_rows(&mut self, src: &KvCache, row: i64, copies: i64) {
        let len = src.lens[row as usize];
        let start = self.rows();
        self.reserve(start + copies, len.max(1));
        for ((k, v), (sk, sv)) in self.layers.iter_mut().zip(&src.layers) {
            for (dst, s) in [(k, sk), (v, sv)] {
                let piece = s.narrow(0, row, 1).narrow(2, 0, len);
                dst.narrow(0, start, copies)
                    .narrow(2, 0, len)
                    .copy_(&piece.expand([copies, -1, -1, -1], false));
            }
        }
        self.lens.extend(std::iter::repeat_n(len, copies as usize));
    }

    /// Sets each row's filled length, after a right-padded prefill filled `len()` of each.
    pub fn set_lens(&mut self, lens: &[i64]) {
        self.lens = lens.to_vec();
    }

    /// Removes row `row`; the last row takes its slot (as `Vec::swap_remove` does).
    pub fn swap_remove(&mut self, row: usize) {
        let last = self.lens.len() - 1;
        if row != last {
            let len = self.lens[last];
            for (k, v) in &mut self.layers {
                for buf in [k, v] {
                    let moved = buf.narrow(0, last as i64, 1).narrow(2, 0, len);
                    buf.narrow(0, row as i64, 1).narrow(2, 0, len).copy_(&moved);
                }
            }
        }
        self.lens.swap_remove(row);
    }

    /// Writes this step's `k`, `v` (b, kv, t, d) for `layer` after each row's filled
    /// positions and returns views of everything so far, (b, kv, longest + t, d).
    pub(crate) fn update(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let (b, t) = (k.size()[0], k.size()[2]);
        let longest = self.len();
        if self.uniform() {
            let (k_buf, v_buf) = &self.layers[layer];
            k_buf.narrow(0, 0, b).narrow(2, longest, t).copy_(k);
            v_buf.narrow(0, 0, b).narrow(2, longest, t).copy_(v);
        } else if t == 1 {
            if layer == 0 || self.step_index.is_none() {
                let (kv, d) = (k.size()[1], k.size()[3]);
                let index = Tensor::from_slice(&self.lens)
                    .to_device(k.device())
                    .view([b, 1, 1, 1])
                    .expand([b, kv, 1, d], false)
                    .contiguous();
                self.step_index = Some(index);
            }
            let (k_buf, v_buf) = &self.layers[layer];
            if let Some(index) = &self.step_index {
                let _ = k_buf.narrow(0, 0, b).scatter_(2, index, k);
                let _ = v_buf.narrow(0, 0, b).scatter_(2, index, v);
            }
        } else {
            let (k_buf, v_buf) = &self.layers[layer];
            for (row, &len) in self.lens.iter().enumerate() {
                let r = row as i64;
                k_buf
                    .narrow(0, r, 1)
                    .narrow(2, len, t)
                    .copy_(&k.narrow(0, r, 1));
                v_buf
                    .narrow(0, r, 1)
                    .narrow(2, len, t)
                    .copy_(&v.narrow(0, r, 1));
            }
        }
        let (k_buf, v_buf) = &self.layers[layer];
        (
            k_buf.narrow(0, 0, b).narrow(2, 0, longest + t),
            v_buf.narrow(0, 0, b).narrow(2, 0, longest + t),
        )
    }

    /// Marks `t` more positions as filled in every row; called once per forward, after
    /// every layer.
    pub(crate) fn advance(&mut self, t: i64) {
        for len in &mut self.lens {
            *len += t;
        }
        self.step_index = None;
    }
}
