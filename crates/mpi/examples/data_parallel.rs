//! The digits network of `examples/tour.rs` (a 64 → 128 → 64 → 10 ReLU MLP, f32)
//! trained data-parallel on MPI: every global batch of 32 images is cut into
//! micro-batches of 8, each rank computes its share of them, the gradients are summed
//! in micro-batch order across the ranks, clipped to norm 1, and every rank takes the
//! same Adam step. The final loss is the same to the last bit on any number of ranks:
//!
//! ```text
//! cargo build --release --manifest-path crates/mpi/Cargo.toml --example data_parallel
//! mpirun -np 1 crates/mpi/target/release/examples/data_parallel
//! mpirun --oversubscribe -np 4 crates/mpi/target/release/examples/data_parallel
//! ```
//!
//! (`--allow-run-as-root` as root.) Options: `--epochs E` (5), `--allreduce` (MPI's
//! all-reduce instead of the ordered chain: faster on many machines, not bit-stable).

use descent_backprop::Backward;
use descent_data::{CsvOptions, Dataset, TensorDataset, read_csv};
use descent_mpi::{DataParallel, Reduction};
use descent_nn::{Activation, Mlp, init};
use descent_optim::{Adam, MicroBatches, Optimizer, clip_grad_norm};
use descent_tape::{ParamStore, Tape};
use std::error::Error;
use std::ops::Range;
use std::time::Instant;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits.csv");
const SIZES: [usize; 4] = [64, 128, 64, 10];
const GLOBAL: usize = 32;
const MICRO: usize = 8;
const LR: f64 = 3e-3;
const CLIP: f64 = 1.0;
const SEED: u64 = 7;

/// Epoch `epoch`'s order of `n` samples: a SplitMix64-driven Fisher-Yates shuffle,
/// the same on every rank.
fn order(n: usize, epoch: u64) -> Vec<usize> {
    let mut s = SEED.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut o: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        o.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    o
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut epochs = 5u64;
    let mut reduction = Reduction::Ordered;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--epochs" => epochs = args.next().ok_or("--epochs needs a value")?.parse()?,
            "--allreduce" => reduction = Reduction::AllReduce,
            _ => return Err(format!("unknown argument {a} (--epochs E, --allreduce)").into()),
        }
    }
    let universe = mpi::initialize().ok_or("MPI is initialised already")?;
    let world = universe.world();
    let dp = DataParallel::new(&world).with_reduction(reduction);

    let digits = read_csv(DATA, &CsvOptions::classes(10).scale(1.0 / 16.0))?;
    let (train, test): (TensorDataset<f32>, TensorDataset<f32>) =
        digits.split(0.8, &mut init::rng(SEED))?;
    let mut store = ParamStore::<f32>::new();
    let net = Mlp::new(
        &mut store,
        "mlp",
        &SIZES,
        Activation::Relu,
        &mut init::rng(SEED),
    );
    dp.broadcast_params(&mut store)?;
    let mut opt = Adam::new(LR);
    if dp.rank() == 0 {
        println!(
            "{} ranks, {} threads each; {} training images, global batches of {GLOBAL} in micro-batches of {MICRO}; {:?} reduction",
            dp.size(),
            rayon::current_num_threads(),
            train.len(),
            dp.reduction()
        );
    }

    let start = Instant::now();
    let mut last = 0.0;
    for epoch in 0..epochs {
        let o = order(train.len(), epoch);
        let mut sum = 0.0;
        for chunk in o.chunks(GLOBAL) {
            let batches = MicroBatches::new(chunk.len(), MICRO)?;
            let (mut mean, loss) = dp.gradient_mean(&store, batches, |r: Range<usize>| {
                let b = train.batch(&chunk[r]);
                let labels = b.targets.classes().ok_or("class labels")?;
                let tape = Tape::new();
                let logits = net.forward(&tape, &store, tape.constant(b.inputs.clone()));
                // The loss summed over the micro-batch: its mean times its size.
                let loss = logits.cross_entropy(labels) * labels.len() as f32;
                let grads = loss.backward();
                Ok::<_, Box<dyn Error>>((grads, f64::from(loss.item())))
            })?;
            clip_grad_norm(&store, &mut mean, CLIP)?;
            opt.step(&mut store, &mean)?;
            sum += loss * chunk.len() as f64;
            last = loss;
        }
        if dp.rank() == 0 {
            println!(
                "epoch {:>2}  train loss {:.6}",
                epoch + 1,
                sum / train.len() as f64
            );
        }
    }
    if dp.rank() == 0 {
        let all = test.all();
        let tape = Tape::new();
        let logits = net.forward(&tape, &store, tape.constant(all.inputs));
        let test_loss = logits
            .cross_entropy(all.targets.classes().ok_or("labels")?)
            .item();
        println!(
            "final loss (last step) {last:e} (f64 bits {:016x}); test loss {:e} (f32 bits {:08x}); {:.2} s",
            last.to_bits(),
            test_loss,
            test_loss.to_bits(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
