//! The tape of a small MLP as a picture: a 2 -> 4 -> 4 -> 1 tanh network (the
//! `descent::nn::Mlp` layers `mlp.0`, `mlp.1`, `mlp.2`, each recorded in a tape scope of
//! its name) on a batch of 3, with a mean squared error loss in the scope `loss`, one
//! backward pass, and the tape written as a Graphviz DOT graph by
//! `descent::backprop::to_dot`: a box per node with its op, shape, value and gradient,
//! an edge per operand, a cluster per scope.
//!
//! It writes `out/mlp.dot` in the workspace (or `OUT_DIR/mlp.dot` with a directory as
//! the first argument) and, if Graphviz's `dot` is installed, renders it to `mlp.svg`
//! beside it; otherwise it prints the command that would.
//!
//! Run it with `cargo run --example draw_graph [OUT_DIR]`.

#[path = "common/mod.rs"]
mod common;
use descent::backprop::to_dot;
use descent::nn::{Activation, Mlp, init};
use descent::prelude::*;
use descent::tape::ParamStore;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `text` to `path` through a temporary file beside it, renamed over `path`.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn main() -> Result<(), Box<dyn Error>> {
    let out: PathBuf = match common::command_line(
        "The tape of a small MLP (2 -> 4 -> 4 -> 1, tanh), one backward pass, as a Graphviz DOT graph.",
        "usage: draw_graph [OUT_DIR]  (default: out/ in the workspace; writes mlp.dot)",
        1,
    )
    .pop()
    {
        Some(dir) => dir.into(),
        None => [env!("CARGO_MANIFEST_DIR"), "out"].iter().collect(),
    };
    std::fs::create_dir_all(&out)?;

    let mut store = ParamStore::<f64>::new();
    let mlp = Mlp::new(
        &mut store,
        "mlp",
        &[2, 4, 4, 1],
        Activation::Tanh,
        &mut init::rng(3),
    );
    let tape = Tape::new();
    let x = tape
        .constant(Tensor::from([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]]))
        .named("x");
    let y = tape
        .constant(Tensor::from([[1.0], [0.0], [-1.0]]))
        .named("y");
    let prediction = mlp.forward(&tape, &store, x).named("prediction");
    let loss = {
        let _scope = tape.scope("loss");
        prediction.mse(y).named("loss")
    };
    let grads = loss.backward();
    println!("{} nodes, loss {:.6}", tape.len(), loss.item());

    let dot_path = out.join("mlp.dot");
    write_file(&dot_path, &to_dot(&tape, Some(&grads)))?;
    println!("wrote {}", dot_path.display());

    let svg_path = out.join("mlp.svg");
    let has_dot = Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_dot {
        let rendered = Command::new("dot").arg("-Tsvg").arg(&dot_path).output()?;
        if !rendered.status.success() {
            return Err(format!(
                "dot -Tsvg failed: {}",
                String::from_utf8_lossy(&rendered.stderr)
            )
            .into());
        }
        write_file(&svg_path, &String::from_utf8(rendered.stdout)?)?;
        println!("wrote {}", svg_path.display());
    } else {
        println!(
            "Graphviz's `dot` is not installed; to draw the graph, install Graphviz \
             (Debian: apt-get install graphviz) and run:\n  dot -Tsvg {} -o {}",
            dot_path.display(),
            svg_path.display()
        );
    }
    Ok(())
}
