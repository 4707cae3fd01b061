//! The memory layout the W6 budget (at most 64 bytes a scalar node, gradients
//! included) rests on. See docs/ARCHITECTURE.md, "Node layout".

use descent::Var;
use descent::tape::{Node, Op};
use std::mem::size_of;

#[test]
fn a_scalar_node_fits_the_budget_with_its_gradient() {
    // 16 (op) + 8 (two operand ids) + 8 (value) + 4 (meta), padded to 40.
    assert_eq!(size_of::<Node<f64>>(), 40);
    assert_eq!(size_of::<Node<f32>>(), 32);
    // The walk adds one f64 gradient and one reached bit per node.
    let with_gradient = size_of::<Node<f64>>() + size_of::<f64>();
    assert!(
        with_gradient < 64,
        "{with_gradient} bytes a node with its gradient"
    );
}

#[test]
fn ops_and_handles_stay_small() {
    assert_eq!(size_of::<Op>(), 16);
    // A tape reference, a node id and a 64-bit generation (which never wraps).
    assert_eq!(size_of::<Var<'_, f64>>(), 24);
}

#[test]
fn nodes_are_plain_data() {
    // Copy nodes make `reset` a length change, not a per-node drop.
    fn is_copy<T: Copy>() {}
    is_copy::<Node<f64>>();
}
