//! The checked training step allocates nothing once warm: clipping in place and the
//! optimiser's step read the walk's gradient store without copying it.

use descent::backprop::backward_into;
use descent::nn::{Activation, Mlp, init};
use descent::optim::{Adam, Optimizer, Sgd, clip_grad_norm};
use descent::prelude::*;
use descent_bench::alloc_count::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn allocations_of_clip_and_step(mut opt: impl Optimizer<f32>) -> [u64; 2] {
    let mut store = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &[16, 64, 64, 4],
        Activation::Relu,
        &mut init::rng(3),
    );
    let x = Tensor::from_fn(&[8, 16], |i| (i % 13) as f32 * 0.1 - 0.6);
    let labels: Vec<usize> = (0..8).map(|i| i % 4).collect();
    let tape = Tape::<f32>::new();
    let mut grads = Gradients::empty();
    let mut counted = [0u64; 2];
    for step in 0..6 {
        tape.reset();
        let loss = mlp
            .forward(&tape, &store, tape.constant(&x))
            .cross_entropy(&labels);
        backward_into(loss, &mut grads).expect("a scalar loss");
        let c0 = alloc_count::counts();
        clip_grad_norm(&store, &mut grads, 0.5).expect("finite gradients");
        let c1 = alloc_count::counts();
        opt.step(&mut store, &grads).expect("finite gradients");
        let c2 = alloc_count::counts();
        // The first step creates the optimiser's state; from the third on, all is warm.
        if step >= 2 {
            counted[0] += (c1 - c0).calls();
            counted[1] += (c2 - c1).calls();
        }
    }
    counted
}

#[test]
fn a_warm_clip_and_step_allocate_nothing() {
    assert_eq!(
        allocations_of_clip_and_step(Sgd::new(0.1).momentum(0.9)),
        [0, 0]
    );
    assert_eq!(allocations_of_clip_and_step(Adam::new(1e-3)), [0, 0]);
}
