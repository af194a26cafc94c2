//! The c10d process group across real processes on loopback (Gloo, CPU): this test
//! binary re-runs itself as rank 0 and rank 1 (the `worker` test, which does nothing
//! unless `TILLER_TEST_SCENARIO` is set) and checks what each rank computed, how a rank
//! that exits is named by the survivor, and the start-up errors.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use tch::{Kind, Tensor};
use tiller_model::dist::{Backend, Collective, ProcessGroup, World};

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
        other => panic!("unknown scenario {other}"),
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
