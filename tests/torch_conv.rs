//! Convolution and pooling against PyTorch in f64: forward values and the gradients of
//! `sum(out * g)` with respect to the input, the weight and the bias, over every
//! combination of stride {1, 2}, padding {0, 1, 2}, dilation {1, 2}, groups {1, 2} and
//! batch {1, 3}, for `conv1d` and `conv2d`; pooling over kernel, stride, padding,
//! `ceil_mode` and batch. The PyTorch values are in `tests/fixtures/torch_conv.safetensors`,
//! written by `tests/oracle/torch_conv.py` (inputs are a formula both sides compute to the
//! same bits; see the script). Tolerance: `1e-10` relative (`|a - e| <= 1e-10 · max(1, |e|)`).

use descent::prelude::*;
use safetensors::SafeTensors;

const FIXTURE: &[u8] = include_bytes!("fixtures/torch_conv.safetensors");
const TOL: f64 = 1e-10;

/// The script's `value(shape, seed)`.
fn value(shape: &[usize], seed: usize) -> Tensor<f64> {
    Tensor::from_fn(shape, |i| {
        ((7919 * i + 104_729 * seed) % 2003) as f64 / 1001.5 - 1.0
    })
}

fn fixture<'a>(st: &'a SafeTensors<'a>, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("the fixture has no tensor {name}: regenerate it"));
    let data = t
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), data)
}

/// Compares `got` with the fixture's `name`; returns the largest relative error.
fn check(st: &SafeTensors<'_>, name: &str, got: &Tensor<f64>) -> f64 {
    let (shape, want) = fixture(st, name);
    assert_eq!(got.shape(), shape.as_slice(), "{name}: shape");
    let mut worst = 0.0f64;
    for (i, (a, e)) in got.data().iter().zip(&want).enumerate() {
        let err = (a - e).abs() / e.abs().max(1.0);
        assert!(err <= TOL, "{name}[{i}]: descent {a}, torch {e}");
        worst = worst.max(err);
    }
    worst
}

#[test]
fn convolution_agrees_with_torch_over_the_grid() {
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    let mut cases = 0;
    let mut worst = 0.0f64;
    for dims in [1, 2] {
        for n in [1, 3] {
            for stride in [1, 2] {
                for padding in [0, 1, 2] {
                    for dilation in [1, 2] {
                        for groups in [1, 2] {
                            let name = format!(
                                "conv{dims}d_n{n}_s{stride}_p{padding}_d{dilation}_g{groups}"
                            );
                            let tape = Tape::<f64>::new();
                            let (xs, ws): (Vec<usize>, Vec<usize>) = if dims == 2 {
                                (vec![n, 4, 6, 5], vec![4, 4 / groups, 3, 2])
                            } else {
                                (vec![n, 4, 9], vec![4, 4 / groups, 3])
                            };
                            let x = tape.var(value(&xs, 1));
                            let w = tape.var(value(&ws, 2));
                            let b = tape.var(value(&[4], 3));
                            let out = if dims == 2 {
                                let o = Conv2dOptions::new()
                                    .stride(stride)
                                    .padding(padding)
                                    .dilation(dilation)
                                    .groups(groups);
                                x.conv2d(w, Some(b), o)
                            } else {
                                let o = Conv1dOptions::new()
                                    .stride(stride)
                                    .padding(padding)
                                    .dilation(dilation)
                                    .groups(groups);
                                x.conv1d(w, Some(b), o)
                            };
                            let g = tape.constant(value(out.shape().as_slice(), 7));
                            let grads = (out * g).sum().backward();
                            for (part, t) in [
                                ("out", out.value()),
                                ("gx", grads.wrt(x).to_tensor()),
                                ("gw", grads.wrt(w).to_tensor()),
                                ("gb", grads.wrt(b).to_tensor()),
                            ] {
                                worst = worst.max(check(&st, &format!("{name}.{part}"), &t));
                            }
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 96);
    println!("{cases} convolutions, largest relative error {worst:e}");
}

#[test]
fn pooling_agrees_with_torch_over_the_grid() {
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    let mut cases = 0;
    let mut worst = 0.0f64;
    for max in [true, false] {
        for n in [1, 3] {
            for kernel in [2, 3] {
                for stride in [1, 2] {
                    for padding in [0, 1] {
                        for ceil in [false, true] {
                            let (kh, kw) = (kernel, if kernel == 3 { 3 } else { 2 });
                            if padding > kw / 2 {
                                continue;
                            }
                            let kind = if max { "max" } else { "avg" };
                            let name = format!(
                                "{kind}pool_n{n}_k{kh}x{kw}_s{stride}_p{padding}_c{}",
                                u8::from(ceil)
                            );
                            let tape = Tape::<f64>::new();
                            let x = tape.var(value(&[n, 3, 7, 6], 1));
                            let o = Pool2dOptions::new([kh, kw])
                                .stride(stride)
                                .padding(padding)
                                .ceil_mode(ceil);
                            let out = if max {
                                x.max_pool2d(o)
                            } else {
                                x.avg_pool2d(o)
                            };
                            let g = tape.constant(value(out.shape().as_slice(), 7));
                            let grads = (out * g).sum().backward();
                            worst = worst.max(check(&st, &format!("{name}.out"), &out.value()));
                            worst = worst.max(check(
                                &st,
                                &format!("{name}.gx"),
                                &grads.wrt(x).to_tensor(),
                            ));
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 64);
    println!("{cases} poolings, largest relative error {worst:e}");
}

/// The layers (`descent::nn::Conv2d`, `Conv1d`) loaded with the fixture's weights give
/// PyTorch's outputs and parameter gradients, found by parameter name.
#[test]
fn conv_layers_with_torch_weights_agree_with_torch() {
    use descent::nn::{Conv1d, Conv2d};
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    for dims in [1, 2] {
        let name = format!("conv{dims}d_n3_s2_p1_d2_g2");
        let mut store = ParamStore::<f64>::new();
        let tape = Tape::<f64>::new();
        let (out, x, weight, bias) = if dims == 2 {
            let o = Conv2dOptions::new()
                .stride(2)
                .padding(1)
                .dilation(2)
                .groups(2);
            let w = value(&[4, 2, 3, 2], 2);
            let layer =
                Conv2d::from_tensors(&mut store, "features.0", w, Some(value(&[4], 3)), o).unwrap();
            let x = tape.var(value(&[3, 4, 6, 5], 1));
            (
                layer.forward(&tape, &store, x),
                x,
                layer.weight(),
                layer.bias().unwrap(),
            )
        } else {
            let o = Conv1dOptions::new()
                .stride(2)
                .padding(1)
                .dilation(2)
                .groups(2);
            let w = value(&[4, 2, 3], 2);
            let layer =
                Conv1d::from_tensors(&mut store, "features.0", w, Some(value(&[4], 3)), o).unwrap();
            let x = tape.var(value(&[3, 4, 9], 1));
            (
                layer.forward(&tape, &store, x),
                x,
                layer.weight(),
                layer.bias().unwrap(),
            )
        };
        assert_eq!(store.name(weight), Some("features.0.weight"));
        assert_eq!(store.name(bias), Some("features.0.bias"));
        assert_eq!(tape.read().name(out.id()), Some("features.0.z"));
        let g = tape.constant(value(out.shape().as_slice(), 7));
        let grads = (out * g).sum().backward();
        check(&st, &format!("{name}.out"), &out.value());
        check(&st, &format!("{name}.gx"), &grads.wrt(x).to_tensor());
        check(
            &st,
            &format!("{name}.gw"),
            &grads.param(weight).unwrap().to_tensor(),
        );
        check(
            &st,
            &format!("{name}.gb"),
            &grads.param(bias).unwrap().to_tensor(),
        );
    }
}
