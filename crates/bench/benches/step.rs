//! One training step of a wide MLP with a small batch (256 → 1024 → 1024 → 10 ReLU,
//! batch 32, f32, SGD with momentum), three ways of handing the gradients to the
//! optimiser, so that the checked, copy-free step can be compared with the forms it
//! replaced, in one run:
//!
//! - `checked_in_place`: the one form the guide shows, `sgd.step(&mut store, &grads)`
//!   on the walk's store (every gradient checked, none copied);
//! - `unchecked`: `begin_step` and `update` per parameter from the gradient views, with
//!   no checks (the bench's earlier form);
//! - `copied`: `ParamGrads::from(&grads)` and then `sgd.step` (the guide's earlier
//!   form).
//!
//! `step/*` times a whole step (record, backward, update); `update/*` times the update
//! phase alone on gradients computed once. Run with
//! `cargo bench -p descent-bench --bench step`.

use criterion::{Criterion, criterion_group, criterion_main};
use descent::backprop::{ParamGrads, backward_into};
use descent::nn::{Activation, Mlp, init};
use descent::optim::{Optimizer, Sgd};
use descent::prelude::*;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 4] = [256, 1024, 1024, 10];
const BATCH: usize = 32;

#[derive(Clone, Copy)]
enum Form {
    CheckedInPlace,
    Unchecked,
    Copied,
}

impl Form {
    const ALL: [(Form, &'static str); 3] = [
        (Form::CheckedInPlace, "checked_in_place"),
        (Form::Unchecked, "unchecked"),
        (Form::Copied, "copied"),
    ];

    fn update(self, sgd: &mut Sgd<f32>, store: &mut ParamStore<f32>, grads: &Gradients<f32>) {
        match self {
            Form::CheckedInPlace => sgd.step(store, grads).expect("finite gradients"),
            Form::Unchecked => {
                sgd.begin_step();
                for (id, g) in grads.params() {
                    let p = store.get_mut(id).expect("a parameter of the store");
                    sgd.update(id, p.data_mut(), g.data());
                }
            }
            Form::Copied => {
                let copy = ParamGrads::from(grads);
                sgd.step(store, &copy).expect("finite gradients");
            }
        }
    }
}

struct Setup {
    store: ParamStore<f32>,
    mlp: Mlp,
    x: Tensor<f32>,
    labels: Vec<usize>,
    sgd: Sgd<f32>,
}

fn setup() -> Setup {
    let mut store = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &SIZES,
        Activation::Relu,
        &mut init::rng(7),
    );
    let x = Tensor::from_fn(&[BATCH, SIZES[0]], |i| {
        ((i * 7919) % 1000) as f32 / 1000.0 - 0.5
    });
    let labels = (0..BATCH).map(|i| (i * 7) % SIZES[3]).collect();
    Setup {
        store,
        mlp,
        x,
        labels,
        sgd: Sgd::new(1e-3).momentum(0.9),
    }
}

fn step(c: &mut Criterion) {
    let mut g = c.benchmark_group("step_mlp256x1024x1024x10_b32");
    for (form, name) in Form::ALL {
        let mut s = setup();
        let tape = Tape::<f32>::new();
        let mut grads = Gradients::empty();
        g.bench_function(format!("step/{name}"), |b| {
            b.iter(|| {
                tape.reset();
                let logits = s.mlp.forward(&tape, &s.store, tape.constant(&s.x));
                let loss = logits.cross_entropy(&s.labels);
                backward_into(loss, &mut grads).expect("a scalar loss");
                form.update(&mut s.sgd, &mut s.store, &grads);
                black_box(loss.item())
            })
        });
    }
    for (form, name) in Form::ALL {
        let mut s = setup();
        let tape = Tape::<f32>::new();
        let logits = s.mlp.forward(&tape, &s.store, tape.constant(&s.x));
        let grads = logits.cross_entropy(&s.labels).backward();
        // A tiny learning rate: the parameters barely move over the many iterations.
        s.sgd.set_learning_rate(1e-9);
        g.bench_function(format!("update/{name}"), |b| {
            b.iter(|| form.update(&mut s.sgd, &mut s.store, black_box(&grads)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40);
    targets = step
}
criterion_main!(benches);
