//! Multi-head attention against PyTorch's `nn.MultiheadAttention` in f64: self- and
//! cross-attention, one to four heads, causal and key-padding masks, with and without
//! biases; outputs, head-averaged weights and every gradient to 1e-10 relative.
//! Reference values from `tests/oracle/torch_attention.py`.

use crate::common;
use common::{assert_close, assert_param_grads, fixture, get, has, load_weights};
use descent_backprop::Backward;
use descent_nn::attention::{AttentionMask, MultiheadAttention, PositionalEmbedding};
use descent_nn::init;
use descent_tape::{ParamStore, Tape};
use descent_tensor::Tensor;

fn case(name: &str, heads: usize, causal: bool) {
    let f = fixture("attention", name);
    let q_t = get(&f, "query");
    let embed = q_t.shape()[2];
    let bias = has(&f, "net.in_proj_bias");
    let mut store = ParamStore::new();
    let mha = MultiheadAttention::new(&mut store, "net", embed, heads, bias, &mut init::rng(0));
    load_weights(&mut store, &f);

    let tape = Tape::new();
    let q = tape.var(q_t.clone());
    let cross = has(&f, "key");
    let (k, v) = if cross {
        (
            tape.var(get(&f, "key").clone()),
            tape.var(get(&f, "value").clone()),
        )
    } else {
        (q, q)
    };
    let mut mask = AttentionMask {
        causal,
        key_padding: None,
    };
    if has(&f, "key_padding") {
        let p = get(&f, "key_padding");
        let keys = p.shape()[1];
        mask.key_padding = Some(
            p.data()
                .chunks(keys)
                .map(|row| row.iter().map(|&x| x != 0.0).collect())
                .collect(),
        );
    }
    let out = mha.forward(&tape, &store, q, k, v, &mask);
    assert_close(
        &format!("{name}: output"),
        out.output.value().view(),
        get(&f, "out"),
    );
    assert_close(
        &format!("{name}: weights"),
        out.weights.value().view(),
        get(&f, "weights"),
    );
    let r = tape.constant(get(&f, "r").clone());
    let s = tape.constant(get(&f, "s").clone());
    let loss = (out.output * r).sum() + (out.weights * s).sum();
    let grads = loss.backward();
    assert_close(
        &format!("{name}: ∂L/∂query"),
        grads.wrt(q),
        get(&f, "grad.query"),
    );
    if cross {
        assert_close(
            &format!("{name}: ∂L/∂key"),
            grads.wrt(k),
            get(&f, "grad.key"),
        );
        assert_close(
            &format!("{name}: ∂L/∂value"),
            grads.wrt(v),
            get(&f, "grad.value"),
        );
    }
    assert_param_grads(name, &f, &store, &grads);
}

#[test]
fn self_attention_matches_torch() {
    case("self_4heads", 4, false);
    case("self_causal", 2, true);
    case("self_causal_padding", 3, true);
}

#[test]
fn cross_attention_matches_torch() {
    case("cross_padding", 2, false);
    case("cross_one_head_nobias", 1, false);
}

#[test]
fn masked_keys_get_no_weight_and_no_gradient() {
    let mut store = ParamStore::<f64>::new();
    let mha = MultiheadAttention::new(&mut store, "a", 4, 2, true, &mut init::rng(1));
    let tape = Tape::new();
    let x = tape.var(Tensor::from_fn(&[2, 3, 4], |i| {
        ((i * 5 % 7) as f64 - 3.0) / 4.0
    }));
    let mask = AttentionMask::none()
        .with_key_padding(vec![vec![false, false, true], vec![false, true, true]]);
    let out = mha.forward(&tape, &store, x, x, x, &mask);
    let w = out.weights.value();
    for (b, masked) in [(0, vec![2]), (1, vec![1, 2])] {
        for i in 0..3 {
            for &j in &masked {
                assert_eq!(w.get(&[b, i, j]), 0.0);
            }
        }
    }
    // Sample 1 sees only its first key, so its output is the same for every query.
    let o = out.output.value();
    for i in 1..3 {
        for e in 0..4 {
            assert!((o.get(&[1, i, e]) - o.get(&[1, 0, e])).abs() < 1e-15);
        }
    }
    assert!(
        out.output
            .sum()
            .backward()
            .wrt(x)
            .data()
            .iter()
            .all(|g| g.is_finite())
    );
}

#[test]
fn bad_shapes_and_masks_are_named() {
    let mut store = ParamStore::<f64>::new();
    let mha = MultiheadAttention::new(&mut store, "attn", 4, 2, true, &mut init::rng(0));
    let tape = Tape::new();
    let q = tape.constant(Tensor::zeros(&[2, 3, 4]));
    let k = tape.constant(Tensor::zeros(&[2, 5, 4]));
    let err = mha
        .try_forward(&tape, &store, q, k, k, &AttentionMask::causal())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "attn: a causal mask needs as many queries as keys, not 3 and 5"
    );
    let bad = tape.constant(Tensor::zeros(&[2, 5, 3]));
    let err = mha
        .try_forward(&tape, &store, q, k, bad, &AttentionMask::none())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "attn: query [2, 3, 4], key [2, 5, 4] and value [2, 5, 3]: they should be [batch, queries, 4], [batch, keys, 4] and [batch, keys, 4]"
    );
    let mask = AttentionMask::none().with_key_padding(vec![vec![false; 5]]);
    let err = mha.try_forward(&tape, &store, q, k, k, &mask).unwrap_err();
    assert_eq!(
        err.to_string(),
        "attn: the key-padding mask has 1 rows of lengths [5]; it should be [2, 5]"
    );
    let pos = PositionalEmbedding::new(&mut store, "pos", 4, 4, &mut init::rng(0));
    let err = pos.try_forward(&tape, &store, k).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pos: the input has shape [2, 5, 4]; it should be [batch, time ≤ 4, 4]"
    );
}

#[test]
fn positional_embedding_gradient_is_the_sum_over_the_batch() {
    let mut store = ParamStore::<f64>::new();
    let pos = PositionalEmbedding::new(&mut store, "pos", 6, 2, &mut init::rng(0));
    let tape = Tape::new();
    let x = tape.constant(Tensor::zeros(&[3, 4, 2]));
    let r = Tensor::from_fn(&[3, 4, 2], |i| i as f64);
    let y = pos.forward(&tape, &store, x);
    let grads = (y * tape.constant(r.clone())).sum().backward();
    let g = grads.param(pos.weight()).unwrap();
    assert_eq!(g.shape(), [6, 2]);
    for t in 0..6 {
        for e in 0..2 {
            let want: f64 = if t < 4 {
                (0..3).map(|b| r.get(&[b, t, e])).sum()
            } else {
                0.0
            };
            assert_eq!(g.get(&[t, e]), want);
        }
    }
}
