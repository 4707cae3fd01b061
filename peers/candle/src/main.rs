//! W1 and W3 (`shared/docs/WORKLOADS.md`) on candle, the Rust peer the speed issue
//! lists, printing one JSON line per workload with the keys the other peers print,
//! for `crates/bench/run_peers.sh`.
//!
//! ```sh
//! cd peers/candle && cargo build --release
//! RAYON_NUM_THREADS=2 target/release/descent-peer-candle W3 --threads 2 --reps 3
//! ```
//!
//! candle reads its thread count from `RAYON_NUM_THREADS`; `--threads` must agree with
//! it (the program stops otherwise, so that a table never labels one count with
//! another). W3's data and initial values are descent-bench's, which are the peers'
//! to the bit (`w3::tests::inputs_are_the_peers_to_the_bit`).

use candle_core::{DType, Device, Tensor, Var};
use serde_json::{Value, json};
use descent_bench::stats::{Summary, rel_err};
use descent_bench::{rss, w1, w3};
use std::time::Instant;

type Result<T> = candle_core::Result<T>;

/// W1: `x ← x − lr · d/dx ln(cosh x)`, a new graph each step. candle has no `cosh`:
/// it is `(eˣ + e⁻ˣ) / 2`, whose gradient `(eˣ − e⁻ˣ) / (eˣ + e⁻ˣ)` cancels to 0 once
/// `eˣ` and `e⁻ˣ` round to neighbours of 1, so `x` stops near 1e-16 instead of the
/// peers' 2.6e-40 (`final_x`).
fn w1(steps: usize, reps: usize) -> Result<Value> {
    let dev = Device::Cpu;
    let (mut times, mut xs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let x = Var::new(w1::X0, &dev)?;
        let t = Instant::now();
        for _ in 0..steps {
            let e = x.exp()?;
            let cosh = ((&e + x.neg()?.exp()?)? * 0.5)?;
            let loss = cosh.log()?;
            let grads = loss.backward()?;
            let g = grads.get(&x).expect("x reaches the loss");
            x.set(&(x.as_tensor() - (g * w1::LR)?)?)?;
        }
        times.push(t.elapsed().as_secs_f64() / steps as f64 * 1e6);
        xs.push(x.to_scalar::<f64>()?);
    }
    Ok(with_base(
        "W1",
        json!({
            "steps": steps,
            "us_per_step": Summary::of(&times),
            "final_x": xs[0],
            "final_x_all_equal": xs.iter().all(|&x| x == xs[0]),
            "mode": "cosh composed from exp (candle has none)",
        }),
    ))
}

/// W3: the 784-512-256-10 ReLU MLP, softmax cross-entropy, SGD with momentum as
/// `torch.optim.SGD` computes it (the first step's buffer is the gradient).
fn w3(reps: usize) -> Result<Value> {
    let dev = Device::Cpu;
    let data = w3::Data::new();
    let batches: Vec<(Tensor, Tensor)> = (0..w3::NBATCH)
        .map(|k| {
            let (x, labels) = data.batch(k);
            let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
            Ok((
                Tensor::from_slice(x, (labels.len(), w3::SIZES[0]), &dev)?,
                Tensor::from_slice(&labels, labels.len(), &dev)?,
            ))
        })
        .collect::<Result<_>>()?;
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let params: Vec<Var> = data
            .params
            .iter()
            .map(|(_, shape, v)| Var::from_slice(v, shape.as_slice(), &dev))
            .collect::<Result<_>>()?;
        let mut momentum: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut t = Instant::now();
        let mut loss_value = 0.0;
        for k in 0..w3::WARMUP + w3::STEPS {
            if k == w3::WARMUP {
                t = Instant::now();
            }
            let (x, labels) = &batches[k % w3::NBATCH];
            let layer = |x: &Tensor, w: &Var, b: &Var| x.matmul(&w.t()?)?.broadcast_add(b);
            let h = layer(x, &params[0], &params[1])?.relu()?;
            let h = layer(&h, &params[2], &params[3])?.relu()?;
            let logits = layer(&h, &params[4], &params[5])?;
            let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
            let grads = loss.backward()?;
            for (p, buf) in params.iter().zip(&mut momentum) {
                let g = grads.get(p).expect("every parameter reaches the loss");
                let b = match buf.take() {
                    None => g.clone(),
                    Some(b) => ((b * w3::MOMENTUM)? + g)?,
                };
                p.set(&(p.as_tensor() - (&b * w3::LR)?)?)?;
                *buf = Some(b);
            }
            loss_value = f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        }
        times.push(t.elapsed().as_secs_f64() / w3::STEPS as f64 * 1e3);
        losses.push(loss_value);
    }
    let median = Summary::of(&times).median;
    Ok(with_base(
        "W3",
        json!({
            "steps": w3::STEPS,
            "warmup": w3::WARMUP,
            "ms_per_step": Summary::of(&times),
            "samples_per_s": w3::BATCH as f64 / (median / 1e3),
            "achieved_gflops": w3::flops_per_step() / 1e9 / (median / 1e3),
            "final_loss": losses[0],
            "final_loss_rel_err": rel_err(losses[0], w3::PEER_FINAL_LOSS),
        }),
    ))
}

/// The fields every line has, then `fields` (a JSON object).
fn with_base(workload: &str, fields: Value) -> Value {
    let mut j = json!({
        "peer": "candle",
        "workload": workload,
        "threads": candle_core::utils::get_num_threads(),
        "candle": "0.11",
        "affinity": rss::affinity(),
    });
    if let (Some(j), Value::Object(f)) = (j.as_object_mut(), fields) {
        j.extend(f);
    }
    j
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: descent-peer-candle <W1|W3> [--threads N] [--reps K] [--n STEPS]";
    let flag = |name: &str| -> Option<usize> {
        let i = args.iter().position(|a| a == name)?;
        Some(args.get(i + 1)?.parse().expect(usage))
    };
    let threads = flag("--threads").unwrap_or(1);
    let reps = flag("--reps").unwrap_or(3);
    if candle_core::utils::get_num_threads() != threads {
        eprintln!(
            "--threads {threads} but candle would use {} threads: set RAYON_NUM_THREADS={threads}",
            candle_core::utils::get_num_threads()
        );
        std::process::exit(2);
    }
    let out = match args.first().map(String::as_str) {
        Some("W1") => w1(flag("--n").unwrap_or(w1::STEPS), reps),
        Some("W3") => w3(reps),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    match out {
        Ok(j) => println!("{j}"),
        Err(e) => {
            eprintln!("candle: {e}");
            std::process::exit(1);
        }
    }
}
