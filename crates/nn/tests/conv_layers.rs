//! The convolution and pooling layers: PyTorch's default initialisation (bounds from
//! `fan_in = in / groups · Π kernel`), parameter names and shapes, errors that name the
//! layer, and outputs equal to the ops they record. Agreement with PyTorch itself is in
//! the workspace's `tests/torch_conv.rs`.

use descent_nn::{AvgPool2d, Conv1d, Conv2d, Error, GlobalAvgPool2d, MaxPool2d, init};
use descent_tape::{Conv1dOptions, Conv2dOptions, ParamStore, Pool2dOptions, Tape};
use descent_tensor::Tensor;

#[test]
fn default_initialisation_is_torch_kaiming_uniform_with_a_sqrt5() {
    let mut store = ParamStore::<f64>::new();
    // fan_in = 16 / 2 · 3 · 3 = 72: U(-1/√72, 1/√72) for weight and bias.
    let conv = Conv2d::new(
        &mut store,
        "c",
        16,
        32,
        3,
        Conv2dOptions::new().groups(2),
        &mut init::rng(3),
    );
    let bound = 1.0 / 72f64.sqrt();
    let w = store.get(conv.weight()).unwrap();
    assert_eq!(w.shape(), &[32, 8, 3, 3]);
    assert!(w.data().iter().all(|v| v.abs() <= bound));
    assert!(
        w.data().iter().any(|v| v.abs() > 0.99 * bound),
        "the bound is approached"
    );
    let b = store.get(conv.bias().unwrap()).unwrap();
    assert!(b.data().iter().all(|v| v.abs() <= bound));
    // Conv1d: fan_in = 4 · 5 = 20.
    let conv = Conv1d::new(
        &mut store,
        "d",
        4,
        64,
        5,
        Conv1dOptions::new(),
        &mut init::rng(3),
    );
    let w = store.get(conv.weight()).unwrap();
    let bound = 1.0 / 20f64.sqrt();
    assert!(w.data().iter().all(|v| v.abs() <= bound));
    assert!(w.data().iter().any(|v| v.abs() > 0.99 * bound));
    // Same seed, same weights.
    let mut other = ParamStore::<f64>::new();
    let again = Conv1d::new(
        &mut other,
        "d",
        4,
        64,
        5,
        Conv1dOptions::new(),
        &mut init::rng(3),
    );
    assert_eq!(other.get(again.weight()), store.get(conv.weight()));
}

#[test]
fn layers_record_the_ops_in_their_scope() {
    let mut store = ParamStore::<f64>::new();
    let o = Conv2dOptions::new().stride(2).padding(1);
    let conv = Conv2d::new(&mut store, "block.conv", 2, 3, [3, 2], o, &mut init::rng(1));
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_fn(&[2, 2, 5, 6], |i| (i as f64 * 0.37).sin()));
    let y = conv.forward(&tape, &store, x);
    assert_eq!(tape.read().scope_of(y.id()), "block.conv");
    let w = tape.param(&store, conv.weight());
    let b = tape.param(&store, conv.bias().unwrap());
    assert_eq!(y.value(), x.conv2d(w, Some(b), o).value());
    let p = MaxPool2d::new(Pool2dOptions::new(2)).forward(&tape, &store, y);
    assert_eq!(p.value(), y.max_pool2d(Pool2dOptions::new(2)).value());
    let a = AvgPool2d::new(Pool2dOptions::new(2).ceil_mode(true)).forward(&tape, &store, y);
    assert_eq!(
        a.value(),
        y.avg_pool2d(Pool2dOptions::new(2).ceil_mode(true)).value()
    );
    let g = GlobalAvgPool2d::new().forward(&tape, &store, y);
    assert_eq!(g.shape().as_slice(), &[2, 3]);
}

#[test]
fn errors_name_the_layer() {
    let mut store = ParamStore::<f64>::new();
    let err = Conv2d::with_init(
        &mut store,
        "c",
        3,
        4,
        3,
        Conv2dOptions::new().groups(2),
        init::Init::Zeros,
        None,
        &mut init::rng(0),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "c: groups = 2 must be at least 1 and divide the 3 input channels"
    );
    assert!(store.is_empty(), "a refused layer registers nothing");
    let conv = Conv2d::new(
        &mut store,
        "c",
        3,
        4,
        3,
        Conv2dOptions::new(),
        &mut init::rng(0),
    );
    let tape = Tape::new();
    let err = conv
        .try_forward(
            &tape,
            &store,
            tape.constant(Tensor::<f64>::zeros(&[1, 2, 5, 5])),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert_eq!(
        err.to_string(),
        "c: the input has shape [1, 2, 5, 5]; it should be [n, c, h, w] with the layer's 3 input channels"
    );
    // The op's own error when the kernel does not fit.
    let err = conv
        .try_forward(
            &tape,
            &store,
            tape.constant(Tensor::<f64>::zeros(&[1, 3, 2, 2])),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("conv2d: input [1, 3, 2, 2], weight [4, 3, 3, 3]"),
        "{err}"
    );
    let err = Conv1d::from_tensors(
        &mut store,
        "d",
        Tensor::<f64>::zeros(&[2, 1, 3]),
        Some(Tensor::zeros(&[3])),
        Conv1dOptions::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "d: the bias should have shape [2], got [3]"
    );
}
