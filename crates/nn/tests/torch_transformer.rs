//! The transformer encoder block against PyTorch's `nn.TransformerEncoderLayer`
//! (`batch_first=True`, `dropout=0.0`) in f64: post- and pre-norm, ReLU and GELU (tanh
//! form), causal and key-padding masks, one layer and two stacked as
//! `nn.TransformerEncoder`; outputs and the gradients of the input and every parameter
//! to 1e-10 relative. Reference values from `tests/oracle/torch_transformer.py`.

use crate::common;
use common::{assert_close, assert_param_grads, fixture, get, has, load_weights};
use descent_backprop::Backward;
use descent_nn::attention::AttentionMask;
use descent_nn::transformer::TransformerEncoderLayer;
use descent_nn::{Activation, Ctx, Module, ModuleInfo, init};
use descent_tape::{ParamStore, Tape};
use descent_tensor::Tensor;

struct Setting {
    heads: usize,
    gelu: bool,
    norm_first: bool,
    causal: bool,
    layers: usize,
}

fn case(name: &str, s: Setting) {
    let f = fixture("transformer", name);
    let x_t = get(&f, "x");
    let d_model = x_t.shape()[2];
    let prefix = |i: usize| {
        if s.layers == 1 {
            "net".to_owned()
        } else {
            format!("net.layers.{i}")
        }
    };
    let dim_ff = get(&f, &format!("{}.linear1.weight", prefix(0))).shape()[0];
    let mut store = ParamStore::new();
    let rng = &mut init::rng(0);
    let layers: Vec<TransformerEncoderLayer> = (0..s.layers)
        .map(|i| {
            TransformerEncoderLayer::new(&mut store, prefix(i), d_model, s.heads, dim_ff, rng)
                .activation(if s.gelu {
                    Activation::Gelu
                } else {
                    Activation::Relu
                })
                .norm_first(s.norm_first)
        })
        .collect();
    load_weights(&mut store, &f);
    let mut mask = AttentionMask {
        causal: s.causal,
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

    let tape = Tape::new();
    let x = tape.var(x_t.clone());
    let mut cx = Ctx::new(&tape, &mut store);
    let mut y = x;
    for layer in &layers {
        y = layer.forward_masked(&mut cx, y, &mask);
    }
    assert_close(&format!("{name}: output"), y.value().view(), get(&f, "out"));
    let r = tape.constant(get(&f, "r").clone());
    let grads = (y * r).sum().backward();
    assert_close(&format!("{name}: ∂L/∂x"), grads.wrt(x), get(&f, "grad.x"));
    assert_param_grads(name, &f, &store, &grads);
}

const BASE: Setting = Setting {
    heads: 2,
    gelu: false,
    norm_first: false,
    causal: false,
    layers: 1,
};

#[test]
fn post_norm_matches_torch() {
    case("post_relu", BASE);
    case(
        "post_gelu_causal",
        Setting {
            heads: 3,
            gelu: true,
            causal: true,
            ..BASE
        },
    );
    case("post_relu_padding", Setting { heads: 1, ..BASE });
}

#[test]
fn pre_norm_matches_torch() {
    case(
        "pre_relu",
        Setting {
            heads: 4,
            norm_first: true,
            ..BASE
        },
    );
    case(
        "pre_gelu_causal_padding",
        Setting {
            gelu: true,
            norm_first: true,
            causal: true,
            ..BASE
        },
    );
}

#[test]
fn two_stacked_layers_match_torch_encoder() {
    case(
        "stack2_post_relu_causal",
        Setting {
            causal: true,
            layers: 2,
            ..BASE
        },
    );
    case(
        "stack2_pre_gelu_padding",
        Setting {
            heads: 4,
            gelu: true,
            norm_first: true,
            layers: 2,
            ..BASE
        },
    );
}

#[test]
fn names_are_torch_state_dict_names() {
    let mut store = ParamStore::<f64>::new();
    let layer =
        TransformerEncoderLayer::new(&mut store, "enc.layers.0", 4, 2, 6, &mut init::rng(0));
    let names: Vec<String> = layer
        .state_dict_names(&store)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let want = [
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ]
    .map(|n| format!("enc.layers.0.{n}"));
    assert_eq!(names, want);
    assert_eq!(layer.kind(), "TransformerEncoderLayer");
    assert_eq!(
        layer.num_parameters(&store),
        3 * 16 + 12 + 16 + 4 + 24 + 6 + 24 + 4 + 16
    );
}

#[test]
fn the_layer_mask_is_used_by_record_and_causality_holds() {
    let mut store = ParamStore::<f64>::new();
    let layer = TransformerEncoderLayer::new(&mut store, "enc", 4, 2, 8, &mut init::rng(3))
        .mask(AttentionMask::causal());
    let tape = Tape::new();
    let x = tape.var(Tensor::from_fn(&[1, 4, 4], |i| {
        ((i * 7 % 5) as f64 - 2.0) / 3.0
    }));
    let mut cx = Ctx::new(&tape, &mut store);
    let by_record = layer.call(&mut cx, x).value();
    let by_masked = layer
        .forward_masked(&mut cx, x, &AttentionMask::causal())
        .value();
    let unmasked = layer
        .forward_masked(&mut cx, x, &AttentionMask::none())
        .value();
    assert_eq!(by_record, by_masked);
    assert_ne!(by_record, unmasked);
    // Causal: the output at step 1 does not depend on steps 2 and 3.
    let y = layer.call(&mut cx, x);
    // (A plain sum of a layer norm's output with unit weight is constant: weight it.)
    let w = tape.constant(Tensor::from_fn(&[1, 1, 4], |i| i as f64 + 1.0));
    let g = (y.slice(1, 1, 2) * w).sum().backward();
    let gx = g.wrt(x);
    for t in 2..4 {
        for e in 0..4 {
            assert_eq!(gx.get(&[0, t, e]), 0.0);
        }
    }
    assert!((0..4).any(|e| gx.get(&[0, 0, e]) != 0.0));
}

#[test]
fn bad_inputs_are_named() {
    let mut store = ParamStore::<f64>::new();
    let layer = TransformerEncoderLayer::new(&mut store, "enc", 4, 2, 8, &mut init::rng(0));
    let tape = Tape::new();
    let mut cx = Ctx::new(&tape, &mut store);
    let err = layer
        .try_call(&mut cx, tape.constant(Tensor::zeros(&[2, 3, 5])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "enc: the input has shape [2, 3, 5]; it should be [batch, time, 4]"
    );
    let mask = AttentionMask::none().with_key_padding(vec![vec![false; 3]]);
    let err = layer
        .try_forward_masked(&mut cx, tape.constant(Tensor::zeros(&[2, 3, 4])), &mask)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "enc.self_attn: the key-padding mask has 1 rows of lengths [3]; it should be [2, 3]"
    );
}
