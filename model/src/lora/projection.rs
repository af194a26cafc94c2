//! The projections LoRA can target, as a closed set: each knows its HF name and block
//! (`self_attn` or `mlp`), so adapter tensor names can never land in the wrong block.

use crate::llama::{DecoderLayer, Linear};

/// A projection LoRA can target; `target_modules` names them as HF does (`q_proj`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::QProj,
        Projection::KProj,
        Projection::VProj,
        Projection::OProj,
        Projection::GateProj,
        Projection::UpProj,
        Projection::DownProj,
    ];

    /// The HF module name (`q_proj`, ...), as in `target_modules` and tensor names.
    pub fn name(self) -> &'static str {
        match self {
            Projection::QProj => "q_proj",
            Projection::KProj => "k_proj",
            Projection::VProj => "v_proj",
            Projection::OProj => "o_proj",
            Projection::GateProj => "gate_proj",
            Projection::UpProj => "up_proj",
            Projection::DownProj => "down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The HF block that holds the projection: `self_attn` or `mlp`.
    pub fn block(self) -> &'static str {
        match self {
            Projection::QProj | Projection::KProj | Projection::VProj | Projection::OProj => {
                "self_attn"
            }
            Projection::GateProj | Projection::UpProj | Projection::DownProj => "mlp",
        }
    }

    /// The layer's projection this names.
    pub(super) fn of(self, layer: &mut DecoderLayer) -> &mut Linear {
        let (attn, mlp) = (&mut layer.self_attn, &mut layer.mlp);
        match self {
            Projection::QProj => &mut attn.q_proj,
            Projection::KProj => &mut attn.k_proj,
            Projection::VProj => &mut attn.v_proj,
            Projection::OProj => &mut attn.o_proj,
            Projection::GateProj => &mut mlp.gate_proj,
            Projection::UpProj => &mut mlp.up_proj,
            Projection::DownProj => &mut mlp.down_proj,
        }
    }
}
