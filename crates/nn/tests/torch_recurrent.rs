//! Recurrent layers and cells against PyTorch in f64: the same weights (loaded by
//! their `state_dict` names), the same input and initial state, 50 steps; outputs,
//! final states and the gradients of every input and parameter agree to 1e-10
//! relative. The reference values come from `tests/oracle/torch_recurrent.py`.

use descent_backprop::Backward;
use descent_nn::init;
use descent_nn::recurrent::{Cell, CellKind, Recurrent, RecurrentConfig, State};
use descent_tape::{ParamStore, Tape, Var};
use descent_tensor::Tensor;

use crate::common;
use common::{assert_close, assert_param_grads, get, has, load_weights};

fn fixture(case: &str) -> ParamStore<f64> {
    common::fixture("recurrent", case)
}

/// `sum(v * r)` on the tape.
fn weighted<'t>(tape: &'t Tape<f64>, v: Var<'t, f64>, r: &Tensor<f64>) -> Var<'t, f64> {
    (v * tape.constant(r.clone())).sum()
}

fn layer_case(case: &str, kind: CellKind, layers: usize, bias: bool) {
    let f = fixture(case);
    let x_t = get(&f, "x");
    let input = x_t.shape()[2];
    let hidden = get(&f, "h_n").shape()[2];
    let mut store = ParamStore::new();
    let net = Recurrent::new(
        &mut store,
        "net",
        RecurrentConfig::new(kind, input, hidden)
            .layers(layers)
            .bias(bias),
        &mut init::rng(0),
    );
    load_weights(&mut store, &f);

    let tape = Tape::new();
    let x = tape.var(x_t.clone());
    let initial = has(&f, "h0").then(|| State {
        h: tape.var(get(&f, "h0").clone()),
        c: has(&f, "c0").then(|| tape.var(get(&f, "c0").clone())),
    });
    let out = net.forward(&tape, &store, x, initial);
    assert_close(
        &format!("{case}: output"),
        out.output.value().view(),
        get(&f, "out"),
    );
    assert_close(
        &format!("{case}: h_n"),
        out.state.h.value().view(),
        get(&f, "h_n"),
    );
    let mut loss = weighted(&tape, out.output, get(&f, "r_out"))
        + weighted(&tape, out.state.h, get(&f, "r_h"));
    if let Some(c) = out.state.c {
        assert_close(&format!("{case}: c_n"), c.value().view(), get(&f, "c_n"));
        loss = loss + weighted(&tape, c, get(&f, "r_c"));
    }
    let grads = loss.backward();
    assert_close(&format!("{case}: ∂L/∂x"), grads.wrt(x), get(&f, "grad.x"));
    if let Some(s) = initial {
        assert_close(
            &format!("{case}: ∂L/∂h0"),
            grads.wrt(s.h),
            get(&f, "grad.h0"),
        );
        if let Some(c) = s.c {
            assert_close(&format!("{case}: ∂L/∂c0"), grads.wrt(c), get(&f, "grad.c0"));
        }
    }
    assert_param_grads(case, &f, &store, &grads);
}

#[test]
fn rnn_tanh_and_relu_match_torch_over_50_steps() {
    layer_case("rnn_tanh_l1", CellKind::RnnTanh, 1, true);
    layer_case("rnn_tanh_l2_init", CellKind::RnnTanh, 2, true);
    layer_case("rnn_relu_l2_init", CellKind::RnnRelu, 2, true);
}

#[test]
fn gru_matches_torch_over_50_steps() {
    layer_case("gru_l1", CellKind::Gru, 1, true);
    layer_case("gru_l3_init", CellKind::Gru, 3, true);
    layer_case("gru_l2_nobias", CellKind::Gru, 2, false);
}

#[test]
fn lstm_matches_torch_over_50_steps() {
    layer_case("lstm_l1", CellKind::Lstm, 1, true);
    layer_case("lstm_l2_init", CellKind::Lstm, 2, true);
    layer_case("lstm_l2_nobias", CellKind::Lstm, 2, false);
}

fn cell_case(case: &str, kind: CellKind, bias: bool) {
    let f = fixture(case);
    let (input, hidden) = (get(&f, "x").shape()[1], get(&f, "h0").shape()[1]);
    let mut store = ParamStore::new();
    let cell = Cell::new(
        &mut store,
        "net",
        kind,
        input,
        hidden,
        bias,
        &mut init::rng(0),
    );
    load_weights(&mut store, &f);
    let tape = Tape::new();
    let x = tape.var(get(&f, "x").clone());
    let state = State {
        h: tape.var(get(&f, "h0").clone()),
        c: has(&f, "c0").then(|| tape.var(get(&f, "c0").clone())),
    };
    let next = cell.bind(&tape, &store).step(x, state);
    assert_close(&format!("{case}: h"), next.h.value().view(), get(&f, "h_n"));
    let mut loss = weighted(&tape, next.h, get(&f, "r_h"));
    if let Some(c) = next.c {
        assert_close(&format!("{case}: c"), c.value().view(), get(&f, "c_n"));
        loss = loss + weighted(&tape, c, get(&f, "r_c"));
    }
    let grads = loss.backward();
    assert_close(&format!("{case}: ∂L/∂x"), grads.wrt(x), get(&f, "grad.x"));
    assert_close(
        &format!("{case}: ∂L/∂h0"),
        grads.wrt(state.h),
        get(&f, "grad.h0"),
    );
    if let Some(c) = state.c {
        assert_close(&format!("{case}: ∂L/∂c0"), grads.wrt(c), get(&f, "grad.c0"));
    }
    assert_param_grads(case, &f, &store, &grads);
}

#[test]
fn cells_match_torch() {
    cell_case("cell_rnn", CellKind::RnnTanh, true);
    cell_case("cell_gru", CellKind::Gru, true);
    cell_case("cell_lstm", CellKind::Lstm, true);
    cell_case("cell_lstm_nobias", CellKind::Lstm, false);
}

#[test]
fn wrong_shapes_name_the_layer_and_the_shapes() {
    let mut store = ParamStore::<f64>::new();
    let lstm = Recurrent::lstm(&mut store, "enc", 3, 4, 2, &mut init::rng(0));
    let tape = Tape::new();
    let bad_x = tape.constant(Tensor::zeros(&[2, 5, 7]));
    let err = lstm
        .try_forward(&tape, &store, bad_x, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "enc: the input has shape [2, 5, 7]; it should be [batch, time ≥ 1, 3]"
    );
    let x = tape.constant(Tensor::zeros(&[2, 5, 3]));
    let h = tape.constant(Tensor::zeros(&[1, 2, 4]));
    let err = lstm
        .try_forward(&tape, &store, x, Some(State { h, c: None }))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "enc: the initial state has h [1, 2, 4]; it should be [2, 2, 4] for both h and c"
    );
    let cell = Cell::new(
        &mut store,
        "c",
        CellKind::Gru,
        3,
        4,
        true,
        &mut init::rng(0),
    );
    let bound = cell.bind(&tape, &store);
    let err = bound
        .try_step(tape.constant(Tensor::zeros(&[2, 4])), bound.zero_state(2))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "c: a step's input has shape [2, 4]; it should be [batch, 3]"
    );
}

#[test]
fn the_step_nodes_carry_the_gradient_through_time() {
    // ∂L/∂h_t from `steps` equals the gradient the same layer gives when the loss is
    // moved to h_t's position: compare with finite differences of an injected
    // perturbation, on the first step of a 1-layer tanh RNN.
    let mut store = ParamStore::<f64>::new();
    let rnn = Recurrent::rnn(&mut store, "rnn", 2, 3, 1, &mut init::rng(4));
    let x = Tensor::from_fn(&[1, 6, 2], |i| ((i * 7 % 5) as f64 - 2.0) / 3.0);
    let loss_of = |shift: Option<(usize, f64)>| {
        let tape = Tape::new();
        // Perturbing h_0 component j by ε is perturbing the state the second step
        // starts from; do it through the cell API, step by step.
        let bound = rnn.layers()[0].bind(&tape, &store);
        let mut s = bound.zero_state(1);
        for t in 0..6 {
            let xt = tape.constant(Tensor::from_fn(&[1, 2], |i| x.data()[t * 2 + i]));
            s = bound.step(xt, s);
            if t == 0
                && let Some((j, eps)) = shift
            {
                let bump =
                    tape.constant(Tensor::from_fn(&[1, 3], |i| if i == j { eps } else { 0.0 }));
                s.h = s.h + bump;
            }
        }
        s.h.sum().item()
    };
    let tape = Tape::new();
    let out = rnn.forward(&tape, &store, tape.constant(x.clone()), None);
    let grads = out.steps[5].sum().backward();
    let g0 = grads.wrt(out.steps[0]);
    for j in 0..3 {
        let eps = 1e-6;
        let fd = (loss_of(Some((j, eps))) - loss_of(Some((j, -eps)))) / (2.0 * eps);
        assert!(
            (g0.data()[j] - fd).abs() < 1e-8,
            "component {j}: {} vs {fd}",
            g0.data()[j]
        );
    }
    assert!(out.steps[5].value().data().iter().all(|v| v.is_finite()));
    let _ = loss_of(None);
}

#[test]
fn a_layer_records_each_of_its_cells_in_one_scope() {
    // The binding of a layer's parameters and its steps share the layer's scope
    // (`lstm/l0`), so a report grouped by scope shows each layer once.
    let mut store = ParamStore::<f64>::new();
    let lstm = Recurrent::new(
        &mut store,
        "lstm",
        RecurrentConfig::new(CellKind::Lstm, 3, 4).layers(2),
        &mut init::rng(5),
    );
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_fn(&[2, 3, 3], |i| i as f64 / 18.0));
    let out = lstm.forward(&tape, &store, x, None);
    let read = tape.read();
    let mut scopes: Vec<&str> = (0..read.nodes().len())
        .map(|i| read.scope_of(descent_tape::NodeId::from_index(i)))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    assert_eq!(scopes, ["", "lstm", "lstm/l0", "lstm/l1"]);
    // The step outputs and the bound weights of layer 0 are in its scope.
    let weight = read
        .names()
        .find(|(_, name)| *name == "lstm.weight_hh_l0")
        .map(|(id, _)| id)
        .expect("the recurrent weight of layer 0 is bound");
    assert_eq!(read.scope_of(weight), "lstm/l0");
    assert_eq!(read.scope_of(out.steps[0].id()), "lstm/l1");
}
