//! The training runtime's data-parallel hooks, with a stand-in world of two ranks: each
//! rank reads a disjoint half of the global batch a one-process run reads (so examples
//! per step do not depend on world size), only the main rank writes, and logged metrics
//! are reduced as sums and counts.

use std::path::Path;
use std::sync::Arc;

use tch::Tensor;
use tiller_model::dist::{Collective, Single};
use tiller_model::train::{
    AdamW, DeviceName, MetricWindow, OptimConfig, RunConfig, RunDir, ScheduleConfig, TrainConfig,
    TrainOptions,
};
use tiller_model::DType;

/// Rank `rank` of a world of two whose other rank saw exactly what this one did: sums
/// double, means stay.
struct Mirror {
    rank: usize,
}

impl Collective for Mirror {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        2
    }
    fn all_reduce_mean(&self, _tensors: &[Tensor]) -> tiller_model::Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> tiller_model::Result<()> {
        values.iter_mut().for_each(|v| *v *= 2.0);
        Ok(())
    }
    fn broadcast(&self, _tensors: &[Tensor]) -> tiller_model::Result<()> {
        Ok(())
    }
    fn reduce_scatter_sum(&self, output: &Tensor, input: &Tensor) -> tiller_model::Result<()> {
        let sum = input.chunk(2, 0)[self.rank].shallow_clone() * 2.0;
        output.shallow_clone().copy_(&sum);
        Ok(())
    }
    fn all_gather(&self, output: &Tensor, input: &Tensor) -> tiller_model::Result<()> {
        output
            .shallow_clone()
            .copy_(&Tensor::cat(&[input, input], 0));
        Ok(())
    }
    fn barrier(&self) -> tiller_model::Result<()> {
        Ok(())
    }
}

/// The batches of the first `steps` steps of a run over 20 examples in `out`.
fn batches(
    out: &Path,
    train: &TrainConfig,
    collective: Arc<dyn Collective>,
    steps: usize,
) -> Vec<Vec<usize>> {
    let device = DeviceName::cpu();
    let optim = OptimConfig::default();
    let run = RunConfig {
        model: Path::new("model"),
        out,
        device: &device,
        dtype: DType::F32,
        seed: 5,
        train,
        optim: &optim,
        schedule: ScheduleConfig::default(),
        lora: None,
    };
    run.validate().expect("a valid config");
    let options = TrainOptions {
        resume: false,
        collective,
    };
    let dir = RunDir::open(out, "config.toml", "", &options).expect("open");
    let mut optimizer = AdamW::new(vec![], &optim);
    let mut rt = dir.start("test", 20, &run, &mut optimizer).expect("start");
    (0..steps)
        .map(|_| {
            rt.begin_step();
            (0..train.grad_accum)
                .flat_map(|_| rt.next_batch())
                .collect()
        })
        .collect()
}

#[test]
fn ranks_read_disjoint_halves_of_the_global_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = TrainConfig {
        batch_size: 2,
        grad_accum: 2,
        max_steps: Some(4),
        ..TrainConfig::default()
    };
    // One process reading the global batch itself: batch_size × world.
    let global = TrainConfig {
        batch_size: 4,
        ..local.clone()
    };
    let one = batches(&dir.path().join("one"), &global, Arc::new(Single), 4);
    let r0 = batches(
        &dir.path().join("two"),
        &local,
        Arc::new(Mirror { rank: 0 }),
        4,
    );
    let r1 = batches(
        &dir.path().join("two"),
        &local,
        Arc::new(Mirror { rank: 1 }),
        4,
    );
    for step in 0..4 {
        let (a, b) = (&r0[step], &r1[step]);
        assert_eq!(a.len(), 4, "rank 0 reads batch_size × grad_accum per step");
        assert!(
            a.iter().all(|i| !b.contains(i)),
            "step {step}: ranks overlap"
        );
        let mut both: Vec<usize> = a.iter().chain(b).copied().collect();
        let mut single = one[step].clone();
        both.sort_unstable();
        single.sort_unstable();
        assert_eq!(
            both, single,
            "step {step}: the ranks together read the global batch"
        );
    }
}

#[test]
fn only_the_main_rank_writes_the_run_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let train = TrainConfig {
        max_steps: Some(1),
        ..TrainConfig::default()
    };
    let worker = dir.path().join("worker");
    batches(&worker, &train, Arc::new(Mirror { rank: 1 }), 1);
    assert!(!worker.exists(), "rank 1 created the run directory");
    let main = dir.path().join("main");
    batches(&main, &train, Arc::new(Mirror { rank: 0 }), 1);
    assert!(main.join("config.toml").is_file() && main.join("metrics.jsonl").is_file());
}

#[test]
fn logged_means_reduce_as_sums_and_counts() {
    let mut window = MetricWindow::default();
    window.add("loss", 1.0);
    window.add("loss", 3.0);
    // Token-weighted: 6 correct of 8 targets, then 1 of 2.
    window.add_sum("mean_token_accuracy", 6.0, 8.0);
    window.add_sum("mean_token_accuracy", 1.0, 2.0);
    window.add("never_finite", f64::NAN);
    window.reduce(&Mirror { rank: 0 }).expect("reduce");
    let means = window.drain();
    assert_eq!(
        means,
        vec![
            ("loss".to_owned(), 2.0),
            ("mean_token_accuracy".to_owned(), 0.7)
        ]
    );
    assert!(window.drain().is_empty(), "drain empties the window");
}
