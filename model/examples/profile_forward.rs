//! Times the pieces of a forward pass of a real checkpoint (development aid).
//! cargo run --release -p tiller-model --example profile_forward -- models/smollm2-135m-instruct

// On tch tensors `a += b` is an in-place `add_`, which breaks autograd when `a` is
// saved for backward; `a = a + b` is kept on purpose.
#![allow(clippy::assign_op_pattern)]
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use tiller_model::CausalLm;

fn time<T>(label: &str, n: usize, mut f: impl FnMut() -> T) {
    let _ = f();
    let start = Instant::now();
    for _ in 0..n {
        let _ = f();
    }
    println!(
        "{label:<40} {:>8.2} ms",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}

fn main() {
    let dir = std::env::args().nth(1).expect("model dir");
    println!("threads {}", tch::get_num_threads());
    let lm = CausalLm::load(dir.as_ref(), Device::Cpu, Kind::Float).unwrap();
    let _guard = tch::no_grad_guard();
    for (b, t) in [(1i64, 34i64), (16, 1)] {
        let ids = Tensor::randint(1000, [b, t], (Kind::Int64, Device::Cpu));
        let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).expand([b, t], false);
        println!("-- b={b} t={t}");
        time("full forward", 5, || {
            lm.model.forward(&ids, &pos, None, None)
        });
        let mut h = Tensor::embedding(&lm.model.embed_tokens, &ids, -1, false, false);
        for (i, layer) in lm.model.layers.iter().enumerate() {
            let start = Instant::now();
            let a = layer.self_attn.forward(
                &layer.input_layernorm.forward(&h),
                &lm.model.rope,
                &pos,
                None,
                None,
            );
            let t_attn = start.elapsed().as_secs_f64() * 1e3;
            h = h + a;
            let start = Instant::now();
            let m = layer
                .mlp
                .forward(&layer.post_attention_layernorm.forward(&h));
            let t_mlp = start.elapsed().as_secs_f64() * 1e3;
            h = &h + m;
            let absmin = h.abs().min().double_value(&[]);
            let tiny = h
                .abs()
                .lt(1e-30)
                .logical_and(&h.ne(0.0))
                .sum(Kind::Int64)
                .int64_value(&[]);
            if i % 5 == 0 {
                println!("layer {i:>2}: attn {t_attn:>7.2} ms, mlp {t_mlp:>7.2} ms, min|h| {absmin:e}, denormal-ish {tiny}");
            }
        }
        let x = Tensor::randn([b, t, 576], (Kind::Float, Device::Cpu));
        let layer = &lm.model.layers[0];
        time("rmsnorm", 50, || layer.input_layernorm.forward(&x));
        time("q_proj", 50, || layer.self_attn.q_proj.forward(&x));
        time("mlp", 20, || layer.mlp.forward(&x));
        time("attention (incl. proj)", 20, || {
            layer
                .self_attn
                .forward(&x, &lm.model.rope, &pos, None, None)
        });
        time("matmul 576x576", 50, || {
            x.matmul(&layer.self_attn.o_proj.weight.tr())
        });
        time("lm head last", 20, || lm.model.logits(&x.select(1, t - 1)));
    }
}
