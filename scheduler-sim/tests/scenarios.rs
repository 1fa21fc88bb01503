//! Scenario harness: small in-memory clusters and workloads run through every preset, with
//! the exact placement each must make for a fixed seed (the Nomad-style "run a policy against
//! in-memory state with no cluster"). Expected values are derived by hand in the comments.

use minisim::policy::{Constraint, Node, Preset, Task};
use minisim::sim;
use minisim::trace::TaskSpec;

/// Places `tasks` in order (all arrive at 0, none leave) and returns each chosen node's name.
fn place_all(preset: Preset, seed: u64, nodes: &[Node], tasks: &[Task]) -> Vec<Option<String>> {
    let specs: Vec<TaskSpec> = tasks
        .iter()
        .map(|t| TaskSpec {
            task: t.clone(),
            arrival: 0,
            duration: None,
        })
        .collect();
    let mut stack = preset.build(seed, tasks.iter());
    let out = sim::run(nodes.to_vec(), &specs, &mut stack);
    out.placements
        .iter()
        .map(|p| p.map(|i| nodes[i].name.clone()))
        .collect()
}

fn names(v: &[&str]) -> Vec<Option<String>> {
    v.iter()
        .map(|s| if *s == "-" { None } else { Some(s.to_string()) })
        .collect()
}

/// Two CPU nodes and two GPU nodes.
fn cluster() -> Vec<Node> {
    vec![
        Node::new("cpu-s", 4000, 8192, 0, None),
        Node::new("cpu-l", 16000, 32768, 0, None),
        Node::new("t4x2", 8000, 16384, 2, Some("T4")),
        Node::new("v100x4", 16000, 65536, 4, Some("V100")),
    ]
}

fn workload() -> Vec<Task> {
    vec![
        Task::new("web", 2000, 4096),
        Task::new("infer-a", 1000, 2048).with_gpus(1, 500),
        Task::new("infer-b", 1000, 2048).with_gpus(1, 500),
        Task::new("train", 4000, 8192).with_gpus(2, 1000),
        Task::new("batch", 2000, 2048),
    ]
}

#[test]
fn first_fit_takes_the_lowest_index_that_fits() {
    // web → cpu-s; both shares → t4x2 (best-fit puts them on the same device); train needs
    // two free devices: t4x2 has one left → v100x4; batch fits cpu-s (2000 of 4000 left).
    assert_eq!(
        place_all(Preset::FirstFit, 1, &cluster(), &workload()),
        names(&["cpu-s", "t4x2", "t4x2", "v100x4", "cpu-s"])
    );
}

#[test]
fn every_preset_places_the_workload_exactly() {
    // Scores are computed on utilisation after placement over the node's dimensions (GPU
    // included when the node has devices), so an idle GPU dimension makes GPU nodes look
    // emptier to spread. Hand derivations for the less obvious rows:
    // - spread: web → v100x4 (mean free 0.9375 vs cpu-l 0.875); infer-a → v100x4 (0.865 vs
    //   t4x2 0.833); infer-b → t4x2 (0.833 vs 0.792); train → v100x4 (t4x2 has one free
    //   device); batch → cpu-l (0.906).
    // - balanced: web ties at 1.0 on both CPU nodes → cpu-s; infer-a → v100x4 (std 0.039 vs
    //   0.059); infer-b → t4x2; batch → cpu-l (std 0.031).
    // - fgd (target workload = these five tasks: infer 0.4, the rest 0.2 each): web is
    //   neutral everywhere → cpu-s; infer-a: v100x4 Δ -100 vs t4x2 Δ +100; infer-b shares
    //   v100x4's device 0 (Δ -300); train: t4x2 Δ -800 (uses both its GPUs) vs v100x4 -600;
    //   batch neutral → cpu-s.
    // - random and p2c: the draws of SplitMix64 seeded with 1 (regression values; their
    //   determinism is checked separately).
    let want: [(Preset, [&str; 5]); 8] = [
        (
            Preset::FirstFit,
            ["cpu-s", "t4x2", "t4x2", "v100x4", "cpu-s"],
        ),
        (
            Preset::Binpack,
            ["cpu-s", "t4x2", "t4x2", "v100x4", "cpu-s"],
        ),
        (
            Preset::Spread,
            ["v100x4", "v100x4", "t4x2", "v100x4", "cpu-l"],
        ),
        (
            Preset::Balanced,
            ["cpu-s", "v100x4", "t4x2", "v100x4", "cpu-l"],
        ),
        (
            Preset::DotProduct,
            ["cpu-s", "t4x2", "t4x2", "v100x4", "cpu-s"],
        ),
        (Preset::Fgd, ["cpu-s", "v100x4", "v100x4", "t4x2", "cpu-s"]),
        (
            Preset::Random,
            ["t4x2", "v100x4", "t4x2", "v100x4", "cpu-s"],
        ),
        (Preset::P2c, ["v100x4", "v100x4", "t4x2", "v100x4", "t4x2"]),
    ];
    for (p, w) in want {
        assert_eq!(
            place_all(p, 1, &cluster(), &workload()),
            names(&w),
            "preset {p}"
        );
    }
}

#[test]
fn randomised_presets_repeat_for_a_seed() {
    for p in [Preset::Random, Preset::P2c] {
        let a = place_all(p, 99, &cluster(), &workload());
        assert_eq!(a, place_all(p, 99, &cluster(), &workload()), "preset {p}");
        assert!(a.iter().all(Option::is_some));
    }
}

#[test]
fn constraints_and_anti_affinity_shape_placement() {
    let nodes = vec![
        Node::new("a", 8000, 8192, 0, None).with_label("zone", "east"),
        Node::new("b", 8000, 8192, 0, None).with_label("zone", "west"),
        Node::new("c", 8000, 8192, 0, None).with_label("zone", "west"),
    ];
    let replica = |i: u32| {
        Task::new(format!("db-{i}"), 1000, 1024)
            .with_label("app", "db")
            .with_max_per_node("app", 1)
            .with_constraint("zone=west".parse::<Constraint>().unwrap())
    };
    // Binpack would stack replicas; anti-affinity spreads them over the two west nodes and
    // leaves the third replica pending (east is excluded by the constraint).
    assert_eq!(
        place_all(
            Preset::Binpack,
            1,
            &nodes,
            &[replica(0), replica(1), replica(2)]
        ),
        names(&["b", "c", "-"])
    );
}

#[test]
fn gpu_model_sets_are_respected() {
    let tasks = vec![Task::new("x", 1000, 1024)
        .with_gpus(1, 1000)
        .with_gpu_models(&["V100", "A100"])];
    for p in Preset::ALL {
        assert_eq!(
            place_all(p, 1, &cluster(), &tasks),
            names(&["v100x4"]),
            "preset {p}"
        );
    }
}
