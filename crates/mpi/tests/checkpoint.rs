//! Checkpoints of a data-parallel run, on one process (no MPI): the step directory,
//! the `LATEST` pointer, the progress file, and resuming bit for bit.

use descent_mpi::Error;
use descent_mpi::checkpoint::{Progress, load_local, save_local};
use descent_optim::{Optimizer, Sgd};
use descent_tape::{ParamGrads, ParamStore};
use descent_tensor::Tensor;
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("descent-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn store() -> ParamStore<f32> {
    let mut s = ParamStore::new();
    s.insert("w", Tensor::from([1.0f32, -2.0, 0.5]));
    s.insert("b", Tensor::from([0.25f32]));
    s
}

/// One SGD-with-momentum step from a fixed gradient.
fn step(s: &mut ParamStore<f32>, opt: &mut Sgd<f32>, k: usize) {
    let grads: ParamGrads<f32> = s
        .iter()
        .map(|(id, _, v)| {
            (
                id,
                Tensor::from_fn(v.shape(), |i| (i + k) as f32 * 0.1 - 0.2),
            )
        })
        .collect();
    opt.step(s, &grads).unwrap();
}

fn bits(s: &ParamStore<f32>) -> Vec<u32> {
    s.iter()
        .flat_map(|(_, _, v)| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn a_resumed_run_continues_bit_for_bit() {
    let d = dir("resume");
    let (mut a, mut opt_a) = (store(), Sgd::new(0.1).momentum(0.9));
    for k in 0..3 {
        step(&mut a, &mut opt_a, k);
    }
    let progress = Progress {
        step: 3,
        epoch: 1,
        position: 2,
    };
    save_local(&d, &a, &opt_a, progress).unwrap();
    for k in 3..6 {
        step(&mut a, &mut opt_a, k);
    }
    // A fresh process: other initial values, no momentum yet.
    let (mut b, mut opt_b) = (store(), Sgd::new(0.1).momentum(0.9));
    step(&mut b, &mut opt_b, 99);
    let got = load_local(&d, &mut b, &mut opt_b).unwrap();
    assert_eq!(got, Some(progress));
    for k in 3..6 {
        step(&mut b, &mut opt_b, k);
    }
    assert_eq!(bits(&a), bits(&b), "momentum and parameters restored");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn latest_names_the_newest_step_and_older_ones_are_removed() {
    let d = dir("latest");
    let (s, opt) = (store(), Sgd::new(0.1).momentum(0.9));
    for step in [2, 4] {
        save_local(
            &d,
            &s,
            &opt,
            Progress {
                step,
                epoch: 0,
                position: step,
            },
        )
        .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(d.join("LATEST")).unwrap(),
        "step-000000004\n"
    );
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["LATEST", "step-000000004"]);
    let mut files: Vec<String> = std::fs::read_dir(d.join("step-000000004"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "optimizer.safetensors",
            "params.safetensors",
            "progress.txt"
        ]
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn no_checkpoint_is_none_and_changes_nothing() {
    let d = dir("none");
    let (mut s, mut opt) = (store(), Sgd::new(0.1));
    let before = bits(&s);
    assert_eq!(load_local(&d, &mut s, &mut opt).unwrap(), None);
    assert_eq!(bits(&s), before);
}

#[test]
fn a_damaged_progress_file_is_reported() {
    let d = dir("damaged");
    let (mut s, mut opt) = (store(), Sgd::new(0.1).momentum(0.9));
    save_local(
        &d,
        &s,
        &opt,
        Progress {
            step: 1,
            epoch: 0,
            position: 1,
        },
    )
    .unwrap();
    let p = d.join("step-000000001").join("progress.txt");
    std::fs::write(&p, "step 1\nepoch zero\nposition 1\n").unwrap();
    let err = load_local(&d, &mut s, &mut opt).unwrap_err();
    assert!(matches!(err, Error::Progress { .. }), "{err}");
    assert!(err.to_string().contains("\"epoch zero\""), "{err}");
    std::fs::write(&p, "step 1\n").unwrap();
    let err = load_local(&d, &mut s, &mut opt).unwrap_err();
    assert!(err.to_string().contains("1 of the 3 entries"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let d = dir("other");
    let (s, opt) = (store(), Sgd::new(0.1).momentum(0.9));
    save_local(&d, &s, &opt, Progress::default()).unwrap();
    let mut other = ParamStore::<f32>::new();
    other.insert("w", Tensor::from([0.0f32, 0.0]));
    other.insert("b", Tensor::from([0.0f32]));
    let mut o = Sgd::new(0.1).momentum(0.9);
    let err = load_local(&d, &mut other, &mut o).unwrap_err();
    assert!(matches!(err, Error::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains('w'), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
