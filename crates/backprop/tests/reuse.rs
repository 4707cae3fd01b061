//! `backward_into` reuses a `Gradients`' buffers from step to step, and some rules
//! overwrite a buffer's stale contents instead of zeroing it first (the first product
//! to reach an operand of `matmul_t` or `matmul`). Whatever the earlier steps left
//! behind, every gradient must equal a fresh `backward`'s bit for bit, for the program
//! written with `matmul_t` and with `matmul` and `transpose`, and both must agree with
//! the program written with a broadcast product and a sum (rules that always add).
//! Products large enough to compute both gradients side by side on two threads must
//! give the bits that one thread gives.

use descent_backprop::{Backward, Gradients, backward, backward_into};
use descent_tape::{Tape, Var};
use descent_tensor::Tensor;

fn tensor(shape: &[usize], seed: usize, scale: f64) -> Tensor<f64> {
    let n = shape.iter().product();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| ((i + 7 * seed) as f64 * 0.37).sin() * scale)
            .collect(),
    )
    .unwrap()
}

/// Three ways to write `a bᵀ`.
#[derive(Clone, Copy)]
enum Form {
    MatmulT,
    Matmul,
    /// A broadcast product summed over the last axis.
    Elementwise,
}

fn product_t<'t>(form: Form, a: Var<'t, f64>, b: Var<'t, f64>) -> Var<'t, f64> {
    match form {
        Form::MatmulT => a.matmul_t(b),
        Form::Matmul => a.matmul(b.transpose(0, 1)),
        Form::Elementwise => {
            let (sa, sb) = (a.shape(), b.shape());
            let a = a.reshape(&[sa[0], 1, sa[1]]);
            let b = b.reshape(&[1, sb[0], sb[1]]);
            (a * b).sum_axis(2, false)
        }
    }
}

/// Programs where an operand is reached once by a product, twice by products, by a
/// product and an add, and through element-wise ops; the loss is the sum of squares
/// of the result.
fn program_loss<'t>(program: usize, form: Form, [x, w, v]: [Var<'t, f64>; 3]) -> Var<'t, f64> {
    let p = |a, b| product_t(form, a, b);
    let y = match program {
        0 => p(x, w),
        1 => p(x, w) + p(x, v),
        2 => p(x, x) + p(x * 2.0, w).sum(),
        // Element-wise rules that overwrite on first reach: unary, same-shape sub,
        // mul and add, each operand reached once or twice.
        _ => {
            let (a, b) = (p(x, w), p(x, v));
            (a.tanh() * b - a).tanh() + b
        }
    };
    (y * y).sum()
}

/// Runs the programs for `x: [rows, k]`, `w, v: [n, k]`, checking each step's
/// gradients against a fresh pass and the `matmul` form, and (with `elementwise`)
/// against the broadcast form, over the first `steps` of four scales of values (stale
/// buffers from a larger scale first); returns their bits.
fn run_programs(rows: usize, k: usize, n: usize, elementwise: bool, steps: usize) -> Vec<Vec<u64>> {
    let tape = Tape::<f64>::new();
    let (mut grads, mut grads_mm) = (Gradients::empty(), Gradients::empty());
    let mut all = Vec::new();
    // Large stale values first, then ordinary ones.
    for (step, scale) in [(0, 1e6), (1, 1.0), (2, -3.0), (3, 1e-3)]
        .into_iter()
        .take(steps)
    {
        for program in 0..4 {
            tape.reset();
            let x = tape.var(tensor(&[rows, k], step, scale));
            let w = tape.var(tensor(&[n, k], step + 1, 1.0));
            let v = tape.var(tensor(&[n, k], step + 2, 1.0));
            let loss = program_loss(program, Form::MatmulT, [x, w, v]);
            let loss_mm = program_loss(program, Form::Matmul, [x, w, v]);
            let other =
                elementwise.then(|| program_loss(program, Form::Elementwise, [x, w, v]).backward());
            backward_into(loss, &mut grads).unwrap();
            backward_into(loss_mm, &mut grads_mm).unwrap();
            let (fresh, fresh_mm) = (loss.backward(), loss_mm.backward());
            for (name, var) in [("x", x), ("w", w), ("v", v)] {
                let what = format!("step {step}, program {program}, d/d{name}");
                let bits = |t: &[f64]| t.iter().map(|g| g.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(grads.wrt(var).data()),
                    bits(fresh.wrt(var).data()),
                    "{what}"
                );
                assert_eq!(
                    bits(grads_mm.wrt(var).data()),
                    bits(fresh_mm.wrt(var).data()),
                    "{what} (matmul)"
                );
                if let Some(other) = &other {
                    let scale = other
                        .wrt(var)
                        .data()
                        .iter()
                        .fold(1.0f64, |m, g| m.max(g.abs()));
                    for got in [&grads, &grads_mm] {
                        for (a, b) in got.wrt(var).data().iter().zip(other.wrt(var).data()) {
                            assert!((a - b).abs() <= 1e-10 * scale, "{what}: {a} vs {b}");
                        }
                    }
                }
                all.push(bits(grads_mm.wrt(var).data()));
                all.push(bits(grads.wrt(var).data()));
            }
        }
    }
    all
}

#[test]
fn reused_buffers_give_fresh_gradients() {
    run_programs(5, 4, 3, true, 4);
}

#[test]
fn side_by_side_gradient_products_match_one_thread() {
    // 128·128·256 multiply-adds per product `x wᵀ` and per gradient product: the size
    // from which both gradients of a product run at the same time on two threads.
    // (The broadcast form, checked on small shapes above, would only slow this down.)
    let (rows, k, n) = (128, 128, 256);
    assert!(rows * k * n >= descent_tensor::kernels::PARALLEL_GEMM_VOLUME);
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_programs(rows, k, n, false, 2))
    };
    let one = on(1);
    assert_eq!(one.len(), 2 * 4 * 3 * 2);
    assert!(one == on(2), "two threads changed some gradient's bits");
}

/// Lookups of nodes no gradient reached read zeros of their shape, in a store reused
/// over walks whose largest unreached node grows, and in new stores that start from a
/// dropped store's recycled buffers (which hold that store's gradients).
#[test]
fn unreached_nodes_read_zeros_in_reused_and_recycled_stores() {
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty();
    for (step, n) in [2usize, 35, 3, 35].into_iter().enumerate() {
        tape.reset();
        let x = tape.var(Tensor::new(&[n], vec![1.5; n]).unwrap());
        let unused = tape.constant(Tensor::new(&[n], vec![7.0; n]).unwrap());
        let loss = (x * x).sum();
        backward_into(loss, &mut grads).unwrap();
        assert_eq!(grads.wrt(x).data(), vec![3.0; n].as_slice(), "step {step}");
        assert_eq!(grads.wrt(unused).shape(), &[n]);
        assert!(
            grads.wrt(unused).data().iter().all(|&g| g == 0.0),
            "step {step}"
        );
        // A new store, after the old ones' buffers (full of 3.0s) were recycled.
        drop(loss.backward());
        let fresh = loss.backward();
        assert!(
            fresh.wrt(unused).data().iter().all(|&g| g == 0.0),
            "step {step}"
        );
        assert_eq!(fresh.wrt(x).data(), vec![3.0; n].as_slice());
    }
}

/// A copy of a store reads the same gradients (and zeros for unreached nodes) and
/// outlives the original.
#[test]
fn a_cloned_store_reads_the_same_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.var(tensor(&[3, 4], 1, 1.0));
    let unused = tape.constant(tensor(&[5], 2, 1.0));
    let grads = (x * x).sum().backward();
    let copy = grads.clone();
    let want = grads.wrt(x).data().to_vec();
    drop(grads);
    assert_eq!(copy.wrt(x).data(), want.as_slice());
    assert_eq!(copy.wrt(unused).data(), &[0.0; 5]);
}

/// A reused store after graphs of every kind: tensor nodes then none (the store must
/// forget their slots), a scalar graph as long as the last (zeroed in place) and one
/// of another length; and a scalar output seeded with a cotangent other than 1.
#[test]
fn a_reused_store_follows_scalar_and_tensor_graphs() {
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty();
    for step in 0..3 {
        // Four nodes: x, the tensor leaf, the product, the sum.
        tape.reset();
        let x = tape.var(2.0);
        let t = tape.var(Tensor::from([1.0, 2.0]));
        backward_into((t * x).sum(), &mut grads).unwrap();
        assert_eq!(grads.wrt(x).item(), 3.0, "step {step}");
        assert_eq!(grads.wrt(t).data(), &[2.0, 2.0]);
        // Four scalar nodes: as long as the last graph, none of them a tensor.
        tape.reset();
        let x = tape.var(3.0);
        let y = tape.var(5.0);
        let unused = tape.var(7.0);
        backward_into(x * y, &mut grads).unwrap();
        assert_eq!((grads.wrt(x).item(), grads.wrt(y).item()), (5.0, 3.0));
        assert_eq!(grads.wrt(unused).item(), 0.0);
        assert!(grads.get(unused).is_none());
        // Two scalar nodes, then the same graph again: stale gradients must not leak.
        for _ in 0..2 {
            tape.reset();
            let x = tape.var(4.0);
            backward_into(x.ln(), &mut grads).unwrap();
            assert_eq!(grads.wrt(x).item(), 0.25);
        }
    }
    let x = tape.var(3.0);
    let y = x * x;
    let grads = descent_backprop::backward_with(y, &Tensor::scalar(2.5)).unwrap();
    assert_eq!(grads.wrt(x).item(), 15.0);
    assert_eq!(grads.wrt(y).item(), 2.5);
}

/// A new store takes the vectors of one dropped before it on the thread: it must
/// read as empty (no parameters, no gradients) until a walk fills it, and a fresh
/// `backward()` after it must give only its own graph's gradients.
#[test]
fn a_store_made_after_a_drop_starts_empty() {
    let mut store = descent_tape::ParamStore::<f64>::new();
    let w = store.insert("w", Tensor::from([1.0, 2.0]));
    let tape = Tape::<f64>::new();
    let grads = (tape.param(&store, w) * 2.0).sum().backward();
    assert_eq!(grads.param(w).unwrap().data(), &[2.0, 2.0]);
    let other = (tape.param(&store, w) * 3.0).sum().backward();
    // Two stores dropped: the first one's vectors are kept, the second's freed.
    drop(grads);
    drop(other);
    let empty = Gradients::<f64>::empty();
    assert!(empty.param(w).is_none());
    assert_eq!(empty.params().count(), 0);
    drop(empty);
    tape.reset();
    let x = tape.var(3.0);
    let grads = (x * x).backward();
    assert_eq!(grads.wrt(x).item(), 6.0);
    assert!(grads.param(w).is_none());
    assert_eq!(grads.params().count(), 0);
}

/// A reused store's lookup of parameters by id follows each walk's bindings.
#[test]
fn parameter_lookups_follow_the_bindings_of_each_walk() {
    use descent_tape::ParamStore;
    let mut store = ParamStore::<f64>::new();
    let a = store.insert("a", Tensor::from([2.0]));
    let b = store.insert("b", Tensor::from([3.0]));
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty();
    let (ta, tb) = (tape.param(&store, a), tape.param(&store, b));
    backward_into((ta * tb).sum(), &mut grads).unwrap();
    assert_eq!(grads.param(a).unwrap().data(), &[3.0]);
    assert_eq!(grads.param(b).unwrap().data(), &[2.0]);
    tape.reset();
    let tb = tape.param(&store, b);
    backward_into((tb * 5.0).sum(), &mut grads).unwrap();
    assert!(grads.param(a).is_none(), "a is not bound this step");
    assert_eq!(grads.param(b).unwrap().data(), &[5.0]);
}

/// A reused store clears only its marks between walks, not its scalar gradients: a
/// node reached in one walk (here with an infinite gradient) and not in the next of the
/// same length reads as unreached, also to anomaly detection, and a node's first
/// arrival is added to zero, not to the last walk's value (`-0.0` reads `0.0`, as
/// adding into a zeroed gradient gives).
#[test]
fn stale_scalar_gradients_never_show() {
    let tape = Tape::<f64>::new();
    let mut grads = Gradients::empty();
    for _ in 0..2 {
        tape.reset();
        let x = tape.var(1.0);
        let y = tape.var(0.0);
        backward_into(x / y, &mut grads).unwrap();
        assert!(grads.wrt(x).item().is_infinite());
        assert!(grads.wrt(y).item().is_infinite() || grads.wrt(y).item().is_nan());

        tape.reset();
        tape.set_anomaly_detection(true);
        let x = tape.var(1.0);
        let y = tape.var(0.0);
        backward_into(x.exp(), &mut grads).unwrap();
        assert_eq!(grads.wrt(x).item(), 1f64.exp());
        assert_eq!(grads.wrt(y).item(), 0.0);
        assert!(grads.get(y).is_none());
        tape.set_anomaly_detection(false);

        tape.reset();
        let x = tape.var(1.0);
        let y = tape.var(-0.0);
        backward_into(x * y, &mut grads).unwrap();
        assert_eq!(grads.wrt(x).item().to_bits(), 0.0f64.to_bits());
        assert_eq!(grads.wrt(y).item(), 1.0);
    }
}

/// A store made after a larger one was dropped on this thread starts on its memory,
/// whose scalar gradients are not zeroed: it covers only its own walk's nodes, and
/// neither the dropped store's values nor the nodes past its output show.
#[test]
fn a_store_on_a_dropped_stores_memory_covers_only_its_walk() {
    let tape = Tape::<f64>::new();
    let x = tape.var(2.0);
    let mut v = x;
    for _ in 0..200 {
        v = v * x;
    }
    drop(backward(v).unwrap());

    tape.reset();
    let a = tape.var(3.0);
    let b = tape.var(5.0);
    let loss = a * a;
    let later = loss + b;
    let grads = backward(loss).unwrap();
    assert_eq!(grads.len(), loss.id().index() + 1);
    assert_eq!(grads.wrt(a).item(), 6.0);
    assert!(grads.get(b).is_none());
    assert_eq!(grads.wrt(b).item(), 0.0);
    assert!(grads.by_id(later.id()).is_none());
    assert!(
        grads.to_string().contains("2 of 3 nodes reached"),
        "{grads}"
    );
    let copy = grads.clone();
    assert_eq!(copy.len(), 3);
    assert!(copy.by_id(later.id()).is_none());
}
