//! The row-by-row paths of broadcasting (a product's forward and first-order backward,
//! the sum back down broadcast axes, `broadcast_to`) give the bits of the element-by-element rule they replaced: each
//! output element computed, and each gradient element summed, in output order.

use descent::prelude::*;

/// The flat index into `shape` (broadcast to `out`) read at output element `o`.
fn source(shape: &[usize], out: &[usize], mut o: usize) -> usize {
    let mut coords = vec![0; out.len()];
    for axis in (0..out.len()).rev() {
        coords[axis] = o % out[axis];
        o /= out[axis];
    }
    let lead = out.len() - shape.len();
    shape.iter().enumerate().fold(0, |i, (axis, &e)| {
        i * e + if e == 1 { 0 } else { coords[lead + axis] }
    })
}

fn assert_bits(got: &[f64], want: &[f64], what: &str) {
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g.to_bits() == w.to_bits());
    assert!(same, "{what}: {got:?} against {want:?}");
}

fn values(n: usize, seed: u64) -> Vec<f64> {
    // Irrational-looking values so that sums in another order would round differently.
    (0..n)
        .map(|i| ((i as f64 + 1.0) * 0.6173 + seed as f64).sin() * 1.37)
        .collect()
}

#[test]
fn broadcast_products_match_the_element_by_element_rule_bit_for_bit() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[4, 5, 7], &[4, 5, 1]),
        (&[4, 5, 1], &[4, 5, 7]),
        (&[3, 1, 6], &[1, 4, 6]),
        (&[2, 3, 1], &[1, 3, 1]),
        (&[3, 1], &[1, 5]),
        (&[2, 1, 1], &[2, 1, 1]),
        (&[6], &[1]),
    ];
    for &(sa, sb) in cases {
        let out_shape = descent::tensor::broadcast_shapes(sa, sb).expect("broadcastable");
        let n = out_shape.iter().product::<usize>();
        let (ad, bd, gd) = (
            values(sa.iter().product(), 1),
            values(sb.iter().product(), 2),
            values(n, 3),
        );
        let tape = Tape::<f64>::new();
        let a = tape.var(Tensor::new(sa, ad.clone()).unwrap());
        let b = tape.var(Tensor::new(sb, bd.clone()).unwrap());
        let y = a * b;
        let seed = tape.constant(Tensor::new(&out_shape, gd.clone()).unwrap());
        let grads = (y * seed).sum().backward();

        let (mut want_a, mut want_b) = (vec![0.0; ad.len()], vec![0.0; bd.len()]);
        for (o, &g) in gd.iter().enumerate() {
            let (i, j) = (source(sa, &out_shape, o), source(sb, &out_shape, o));
            assert_eq!(
                y.value().data()[o].to_bits(),
                (ad[i] * bd[j]).to_bits(),
                "{sa:?} * {sb:?}: output {o}"
            );
            want_a[i] += g * bd[j];
            want_b[j] += g * ad[i];
        }
        assert_bits(
            grads.wrt(a).data(),
            &want_a,
            &format!("{sa:?} * {sb:?}: ∂/∂a"),
        );
        assert_bits(
            grads.wrt(b).data(),
            &want_b,
            &format!("{sa:?} * {sb:?}: ∂/∂b"),
        );

        // A difference: its gradients are `g` and `-g` summed back down the broadcast
        // axes (the reverse rule of broadcasting, row by row).
        let d = (a - b) * seed;
        let grads = d.sum().backward();
        let (mut want_a, mut want_b) = (vec![0.0; ad.len()], vec![0.0; bd.len()]);
        for (o, &g) in gd.iter().enumerate() {
            want_a[source(sa, &out_shape, o)] += g;
            want_b[source(sb, &out_shape, o)] += -g;
        }
        assert_bits(
            grads.wrt(a).data(),
            &want_a,
            &format!("{sa:?} - {sb:?}: ∂/∂a"),
        );
        assert_bits(
            grads.wrt(b).data(),
            &want_b,
            &format!("{sa:?} - {sb:?}: ∂/∂b"),
        );

        let expanded = a.broadcast_to(&out_shape);
        for (o, &v) in expanded.value().data().iter().enumerate() {
            assert_eq!(
                v,
                ad[source(sa, &out_shape, o)],
                "broadcast_to {sa:?}, element {o}"
            );
        }
    }
}

/// Quotients, maxima and minima, broadcast or not: the gradients are `g` times the
/// op's partials, summed into each operand in output order, as the element-by-element
/// walk they replaced summed them. Some of `b` repeat `a`, so that the maxima and
/// minima see ties (their gradient splits evenly there).
#[test]
fn broadcast_quotients_maxima_and_minima_match_the_element_by_element_rule_bit_for_bit() {
    use descent::tape::ops::BinaryOp;
    let cases: &[(&[usize], &[usize])] = &[
        (&[4, 5, 7], &[4, 5, 1]),
        (&[4, 5, 1], &[4, 5, 7]),
        (&[3, 1, 6], &[1, 4, 6]),
        (&[3, 1], &[1, 5]),
        (&[2, 3, 4], &[2, 3, 4]),
        (&[6], &[1]),
    ];
    for &(sa, sb) in cases {
        let out_shape = descent::tensor::broadcast_shapes(sa, sb).expect("broadcastable");
        let n = out_shape.iter().product::<usize>();
        let ad = values(sa.iter().product(), 1);
        let mut bd = values(sb.iter().product(), 2);
        for (k, b) in bd.iter_mut().enumerate().step_by(3) {
            *b = ad[k % ad.len()];
        }
        let gd = values(n, 3);
        for op in [BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum] {
            let tape = Tape::<f64>::new();
            let a = tape.var(Tensor::new(sa, ad.clone()).unwrap());
            let b = tape.var(Tensor::new(sb, bd.clone()).unwrap());
            let y = match op {
                BinaryOp::Div => a / b,
                BinaryOp::Maximum => a.maximum(b),
                _ => a.minimum(b),
            };
            let seed = tape.constant(Tensor::new(&out_shape, gd.clone()).unwrap());
            let grads = (y * seed).sum().backward();
            let (mut want_a, mut want_b) = (vec![0.0; ad.len()], vec![0.0; bd.len()]);
            for (o, &g) in gd.iter().enumerate() {
                let (i, j) = (source(sa, &out_shape, o), source(sb, &out_shape, o));
                let (da, db) = op.partials(ad[i], bd[j], y.value().data()[o]);
                want_a[i] += g * da;
                want_b[j] += g * db;
            }
            let what = format!("{op:?} of {sa:?} and {sb:?}");
            assert_bits(grads.wrt(a).data(), &want_a, &format!("{what}: ∂/∂a"));
            assert_bits(grads.wrt(b).data(), &want_b, &format!("{what}: ∂/∂b"));
        }
    }
}
