//! W5R `rnn-recompute`: W5's RNN over 1,000 time steps, recorded plainly and with
//! activation checkpointing (`descent::backprop::recompute`), to show the trade the
//! sequences guide describes: peak memory against time.
//!
//! The cell, data seeds, parameters, loss, clipping and SGD are W5's
//! ([`crate::w5`]); only the number of steps differs ([`T`]), and the checkpointed
//! variant records each run of [`SEGMENT`] steps as one node that keeps only its last
//! state: the segment's inputs are the state entering it and the three recurrent
//! parameters, and its inputs `x_t` are constants the segment owns.

use crate::w5::{self, B, I, Model};
use descent::backprop::{backward_into, recompute};
use descent::optim::{Optimizer, clip_grad_norm};
use descent::prelude::*;
use descent::tape::ParamStore;
use std::rc::Rc;

/// Time steps.
pub const T: usize = 1000;
/// Time steps per checkpointed segment: about √T, which balances the states kept on
/// the tape (T / SEGMENT) against one segment's intermediates during backward.
pub const SEGMENT: usize = 32;

/// The inputs over [`T`] steps (W5's seeds, more of them) and W5's target.
pub struct Data {
    /// `T` tensors `[B, I]`.
    pub xs: Rc<Vec<Tensor<f32>>>,
    /// `[B, 1]`.
    pub target: Tensor<f32>,
}

impl Data {
    /// Seeds 501 and 502, as W5.
    pub fn new() -> Self {
        let x = crate::w4::normal(501, T * B * I);
        let xs = x
            .chunks_exact(B * I)
            .map(|s| {
                let v: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                Tensor::new(&[B, I], v).expect("[B, I]")
            })
            .collect();
        Data {
            xs: Rc::new(xs),
            target: w5::Data::new().target,
        }
    }
}

impl Default for Data {
    fn default() -> Self {
        Self::new()
    }
}

/// One cell step, `tanh(x Wxᵀ + h Whᵀ + b)` (W5's order), `h = None` at `t = 0`.
fn cell<'t>(
    tape: &'t Tape<f32>,
    x: &Tensor<f32>,
    h: Option<Var<'t, f32>>,
    [wx, wh, b]: [Var<'t, f32>; 3],
) -> Result<Var<'t, f32>, descent::tape::Error> {
    let xw = tape.constant(x).try_matmul_t(wx)?;
    let pre = match h {
        Some(h) => xw.try_add(h.try_matmul_t(wh)?)?,
        None => xw,
    };
    pre.try_add(b)?.try_tanh()
}

/// The loss over all [`T`] steps, recorded plainly (every intermediate kept).
pub fn loss_plain<'t>(tape: &'t Tape<f32>, model: &Model, data: &Data) -> Var<'t, f32> {
    let [wx, wh, b, wo, bo] = model.ids.map(|id| tape.param(&model.store, id));
    let mut h = None;
    for x in data.xs.iter() {
        h = Some(cell(tape, x, h, [wx, wh, b]).expect("W5's shapes"));
    }
    readout(tape, h.expect("steps"), wo, bo, data)
}

/// The same loss with every [`SEGMENT`] steps recorded as one recomputed node.
pub fn loss_recompute<'t>(tape: &'t Tape<f32>, model: &Model, data: &Data) -> Var<'t, f32> {
    let [wx, wh, b, wo, bo] = model.ids.map(|id| tape.param(&model.store, id));
    // The first step has no state to pass in; it is recorded plainly.
    let mut h = cell(tape, &data.xs[0], None, [wx, wh, b]).expect("W5's shapes");
    let mut start = 1;
    while start < T {
        let end = (start + SEGMENT).min(T);
        let xs = Rc::clone(&data.xs);
        h = recompute(&[h, wx, wh, b], move |tape, v| {
            let mut h = v[0];
            for x in &xs[start..end] {
                h = cell(tape, x, Some(h), [v[1], v[2], v[3]])?;
            }
            Ok(h)
        })
        .expect("W5's shapes");
        start = end;
    }
    readout(tape, h, wo, bo, data)
}

fn readout<'t>(
    tape: &'t Tape<f32>,
    h: Var<'t, f32>,
    wo: Var<'t, f32>,
    bo: Var<'t, f32>,
    data: &Data,
) -> Var<'t, f32> {
    (h.matmul_t(wo) + bo).mse(tape.constant(&data.target))
}

/// One training step as W5's: reset, record (`recomputed` or plainly), backward into
/// `grads`, clip the global norm, SGD. Returns the loss and the norm before clipping.
pub fn step(
    tape: &Tape<f32>,
    model: &mut Model,
    data: &Data,
    grads: &mut Gradients<f32>,
    recomputed: bool,
) -> (f64, f64) {
    tape.reset();
    let loss = if recomputed {
        loss_recompute(tape, model, data)
    } else {
        loss_plain(tape, model, data)
    };
    backward_into(loss, grads).expect("a scalar loss");
    let value = f64::from(loss.item());
    // Released before the step, as in W3: the tape shares the parameters' values with
    // the store, so a step under a live tape would copy them (copy-on-write).
    tape.reset();
    let norm = clip_grad_norm(&model.store, grads, w5::CLIP).expect("finite gradients");
    model
        .sgd
        .step(&mut model.store, &*grads)
        .expect("finite gradients");
    (value, norm)
}

/// The gradients of the loss at `store`'s values, plainly and recomputed, in the
/// store's parameter order (for the agreement check).
pub fn gradients(model: &Model, data: &Data) -> [Vec<Vec<f32>>; 2] {
    let grads = |recomputed: bool| {
        let tape = Tape::<f32>::new();
        let loss = if recomputed {
            loss_recompute(&tape, model, data)
        } else {
            loss_plain(&tape, model, data)
        };
        let g = loss.backward();
        let store: &ParamStore<f32> = &model.store;
        store
            .ids()
            .map(|id| g.wrt(tape.param(store, id)).data().to_vec())
            .collect::<Vec<_>>()
    };
    [grads(false), grads(true)]
}
