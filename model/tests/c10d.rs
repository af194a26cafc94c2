//! The c10d process group across real processes on loopback (Gloo, CPU): this test
//! binary re-runs itself as rank 0 and rank 1 (the `worker` test, which does nothing
//! unless `TILLER_TEST_SCENARIO` is set) and checks what each rank computed, how a rank
//! that exits is named by the survivor, and the start-up errors.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use tch::{Kind, Tensor};
use tiller_model::dist::{Backend, Collective, ProcessGroup, World};
use tiller_model::train::{AdamW, OptimConfig};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn world(rank: usize, world_size: usize, port: u16, timeout: f64, init: f64) -> World {
    World {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: Duration::from_secs_f64(timeout),
        init_timeout: Duration::from_secs_f64(init),
    }
}

/// Runs `scenario` as two ranks of this test binary and returns both outputs.
fn two_ranks(scenario: &str) -> Vec<Output> {
    let exe = std::env::current_exe().expect("test binary path");
    let port = free_port().to_string();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&exe)
                .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
                .env("TILLER_TEST_SCENARIO", scenario)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("TILLER_DIST_TIMEOUT", "20")
                .env("TILLER_DIST_INIT_TIMEOUT", "30")
                .env("OMP_NUM_THREADS", "1")
                .spawn_piped()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for rank"))
        .collect()
}

trait SpawnPiped {
    fn spawn_piped(&mut self) -> std::process::Child;
}
impl SpawnPiped for Command {
    fn spawn_piped(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rank")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One rank's side of a scenario (a no-op in a normal test run).
#[test]
fn worker() {
    let Ok(scenario) = std::env::var("TILLER_TEST_SCENARIO") else {
        return;
    };
    let w = World::from_env().expect("env").expect("a world");
    let group = ProcessGroup::join(&w, Backend::Gloo).expect("join");
    let r = w.rank as f64;
    match scenario.as_str() {
        "collectives" => {
            // Two dtypes (two buckets) and a 2-d shape, averaged in place.
            let a = Tensor::full([3], r + 1.0, (Kind::Float, tch::Device::Cpu));
            let b = Tensor::full([2, 2], 10.0 * (r + 1.0), (Kind::Double, tch::Device::Cpu));
            group
                .all_reduce_mean(&[a.shallow_clone(), b.shallow_clone()])
                .expect("all-reduce");
            assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.5; 3]);
            assert_eq!(Vec::<f64>::try_from(b.view([-1])).unwrap(), vec![15.0; 4]);
            let mut sums = [r, 1.0, 0.25];
            group.all_reduce_sum_f64(&mut sums).expect("sum");
            assert_eq!(sums, [1.0, 2.0, 0.5]);
            let c = Tensor::arange(5, (Kind::Float, tch::Device::Cpu)) * (r + 2.0);
            group.broadcast(&[c.shallow_clone()]).expect("broadcast");
            assert_eq!(
                Vec::<f32>::try_from(&c).unwrap(),
                vec![0.0, 2.0, 4.0, 6.0, 8.0]
            );
            // ZeRO-1's pair: rank r gets the sum of the r-th halves; the halves come back.
            let input = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)) * (r + 1.0);
            let half = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
            group
                .reduce_scatter_sum(&half, &input)
                .expect("reduce-scatter");
            let expected: Vec<f32> = (0..3).map(|i| 3.0 * (3.0 * r as f32 + i as f32)).collect();
            assert_eq!(Vec::<f32>::try_from(&half).unwrap(), expected);
            let both = Tensor::zeros([6], (Kind::Float, tch::Device::Cpu));
            group.all_gather(&both, &half).expect("all-gather");
            assert_eq!(
                Vec::<f32>::try_from(&both).unwrap(),
                vec![0.0, 3.0, 6.0, 9.0, 12.0, 15.0]
            );
            let err = group.all_gather(&half, &half).unwrap_err().to_string();
            assert!(
                err.contains("all-gather: needs flat contiguous tensors"),
                "{err}"
            );
            group.barrier().expect("barrier");
            group.check_same("answer", "42").expect("same value");
            let err = group
                .check_same("rank", &w.rank.to_string())
                .unwrap_err()
                .to_string();
            assert!(err.contains("rank 0 has 0, rank 1 has 1"), "{err}");
            println!("rank {} checked", w.rank);
        }
        "rank_exits" => {
            group.barrier().expect("first barrier");
            if w.rank == 1 {
                std::process::exit(3);
            }
            std::thread::sleep(Duration::from_millis(300));
            let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
            let err = group.all_reduce_mean(&[t]).unwrap_err().to_string();
            println!("rank 0 saw: {err}");
        }
        "zero_bf16" => zero_bf16(Arc::new(group), w.rank),
        other => panic!("unknown scenario {other}"),
    }
}

/// Four bf16 parameters, the same on every rank: a matrix that decays, a norm that does
/// not, another matrix (one 25 MiB bucket), and a matrix larger than a bucket (a bucket of
/// its own, unpadded: reduce-scattered from and all-gathered into the tensor itself).
fn bf16_params() -> Vec<(String, Tensor)> {
    tch::manual_seed(7);
    [
        ("a.weight", vec![5, 7]),
        ("b.norm.weight", vec![7]),
        ("c.weight", vec![3, 3]),
        ("d.weight", vec![2048, 6402]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        let t = Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu))
            .to_kind(Kind::BFloat16)
            .set_requires_grad(true);
        (name.to_owned(), t)
    })
    .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// ZeRO-1 with f32 master weights of bf16 parameters against the unsharded optimizer on
/// the same group and gradients: the same grad norms, masters, moments and weights after
/// three steps, about half the state per rank, and the gathered state reloaded into a
/// fresh sharded optimizer gathers back bit for bit.
fn zero_bf16(group: Arc<ProcessGroup>, rank: usize) {
    let config = OptimConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        shard_optimizer: true,
        ..OptimConfig::default()
    };
    let (p, q) = (bf16_params(), bf16_params());
    let shallow = |ps: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
        ps.iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    };
    let mut sharded = AdamW::new(shallow(&p), &config);
    sharded.shard(group.clone());
    let whole_config = OptimConfig {
        shard_optimizer: false,
        ..config.clone()
    };
    let mut whole = AdamW::new(shallow(&q), &whole_config);
    whole.shard(group.clone());
    assert_eq!((sharded.shards(), whole.shards()), (2, 1));
    // Elements × (two moments + master) × 4 bytes; sharded: half of each bucket, the
    // 51-element one padded to 52.
    let big = 2048 * 6402;
    assert_eq!(whole.state_bytes(), (51 + big) * 12);
    assert_eq!(sharded.state_bytes(), (26 + big / 2) * 12);
    for step in 0..3 {
        tch::manual_seed(100 + 10 * step + rank as i64);
        for ((_, a), (_, b)) in p.iter().zip(&q) {
            let g = Tensor::randn_like(a).to_kind(Kind::BFloat16);
            (a * &g).sum(Kind::Float).backward();
            (b * &g).sum(Kind::Float).backward();
        }
        sharded
            .all_reduce_grads(group.as_ref())
            .expect("reduce-scatter");
        whole.all_reduce_grads(group.as_ref()).expect("all-reduce");
        // The exact norm of the averaged gradients, summed in f64.
        let exact = q
            .iter()
            .map(|(_, t)| {
                let g = t.grad().to_kind(Kind::Double);
                g.square().sum(Kind::Double).double_value(&[])
            })
            .sum::<f64>()
            .sqrt();
        // No clipping, so the updates are compared exactly. The sharded norm sums squares
        // in f64; the unsharded one is torch's f32 norm of each tensor, whose error over
        // the 13M elements of d.weight is about 1e-4 relative.
        let (ns, nw) = (
            sharded.clip_grad_norm(1e9).expect("norm"),
            whole.clip_grad_norm(1e9).expect("norm"),
        );
        assert!(
            (ns - exact).abs() <= 1e-9 * exact,
            "grad norm {ns}, exactly {exact}"
        );
        assert!(
            (nw - exact).abs() <= 1e-3 * exact,
            "grad norm {nw}, exactly {exact}"
        );
        sharded.step(1e-2).expect("sharded step");
        whole.step(1e-2).expect("step");
        sharded.zero_grad();
        whole.zero_grad();
    }
    let (s, w) = (
        sharded.state_tensors().expect("gather"),
        whole.state_tensors().expect("state"),
    );
    let mut names: Vec<&String> = s.keys().collect();
    names.sort();
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(names.len(), w.len());
    for name in names {
        let d = max_diff(&s[name], &w[name]);
        assert!(d <= 1e-6, "{name} differs by {d}");
    }
    for ((name, a), (_, b)) in p.iter().zip(&q) {
        assert_eq!(a.kind(), Kind::BFloat16);
        let d = max_diff(a, b);
        assert!(d == 0.0, "weight {name} differs by {d}");
    }
    // Reloaded from the (unsharded-format) file, a fresh sharded optimizer holds it all.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("optimizer.safetensors");
    whole.save(&file).expect("save");
    let mut fresh = AdamW::new(bf16_params(), &config);
    fresh.shard(group.clone());
    fresh.load(&file, 3).expect("load");
    assert_eq!(fresh.steps(), 3);
    for (name, t) in fresh.state_tensors().expect("gather") {
        assert!(t.equal(&w[&name]), "{name} did not round-trip");
    }
    println!("rank {rank} zero checked");
}

#[test]
fn zero_one_in_bf16_equals_the_unsharded_optimizer() {
    let outputs = two_ranks("zero_bf16");
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", text(o));
        assert!(
            text(o).contains(&format!("rank {rank} zero checked")),
            "{}",
            text(o)
        );
    }
}

#[test]
fn collectives_agree_across_two_processes() {
    let outputs = two_ranks("collectives");
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", text(o));
        assert!(
            text(o).contains(&format!("rank {rank} checked")),
            "{}",
            text(o)
        );
    }
}

#[test]
fn a_rank_that_exits_is_named_by_the_survivor() {
    let outputs = two_ranks("rank_exits");
    assert_eq!(outputs[1].status.code(), Some(3), "{}", text(&outputs[1]));
    let log = text(&outputs[0]);
    assert!(outputs[0].status.success(), "{log}");
    assert!(
        log.contains("rank 0 saw: distributed: rank 0 of 2: all-reduce #2 failed"),
        "{log}"
    );
    assert!(
        log.contains("rank 1 stopped (no heartbeat for 2.0 s"),
        "{log}"
    );
    assert!(log.contains("its last collective was #1)"), "{log}");
}

#[test]
fn a_port_in_use_and_a_missing_peer_are_clear_errors() {
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = ProcessGroup::join(&world(0, 2, port, 5.0, 5.0), Backend::Gloo)
        .err()
        .expect("the port is taken")
        .to_string();
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );

    let err = ProcessGroup::join(&world(0, 2, free_port(), 5.0, 1.0), Backend::Gloo)
        .err()
        .expect("rank 1 never comes")
        .to_string();
    assert!(err.contains("not every rank joined within 1 s"), "{err}");
    assert!(err.contains("1/2 clients joined"), "{err}");
}
