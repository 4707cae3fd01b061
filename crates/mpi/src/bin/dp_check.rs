//! The checks `run_tests.sh` runs under `mpirun`: a small tanh MLP trained
//! data-parallel, written out bit for bit, against one process with gradient
//! accumulation.
//!
//! ```text
//! dp_check reference --steps N [--dp] --out FILE          one process, no MPI
//! dp_check mpi --steps N [--dp] [--allreduce] [--sharded] --out FILE  under mpirun
//!     [--ckpt DIR] [--save-every K] [--resume]
//!     [--die-rank R --die-step S]    rank R aborts in the middle of step S
//!     [--nan-rank R --nan-step S]    rank R's gradient holds a NaN at step S
//! (either mode) [--adam]             Adam with AMSGrad instead of SGD with momentum
//! (either mode) [--freeze NAME]      that parameter is not trained
//!     [--hang-rank R --hang-step S]  rank R stops answering at step S
//! dp_check mismatch                  rank 1 holds another shape: the error names it
//! ```
//!
//! The data: 45 samples of 5 features, 3 classes, from a SplitMix64 stream; global
//! batches of 13 in a seeded order per epoch (the last of an epoch has 6), cut into
//! micro-batches of 3 (the last of a full batch has 1). Model `5 → 8 → 3`, tanh,
//! cross-entropy summed over a micro-batch; SGD with momentum 0.9. With `--dp`, every
//! sample's gradient is clipped to norm 1 and Gaussian noise (σ = 1) is added once per
//! step. FILE gets the final parameters' bits and the last loss's, one per line.

use descent_backprop::{Backward, PerSampleOptions, per_sample_grads};
use descent_mpi::{DataParallel, Reduction, ShardedOptimizer, checkpoint, noisy_mean};
use descent_optim::{Adam, FlatGrads, MicroBatches, Optimizer, Sgd, accumulate_mean};
use descent_tape::{ParamGrads, ParamId, ParamStore, Tape, Var};
use descent_tensor::Tensor;
use std::error::Error;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

const N: usize = 45;
const D: usize = 5;
const H: usize = 8;
const C: usize = 3;
const GLOBAL: usize = 13;
const MICRO: usize = 3;
const CLIP: f64 = 1.0;
const SIGMA: f64 = 1.0;
const SEED: u64 = 2026;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(seed: u64, n: usize, bound: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| ((splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * bound)
        .collect()
}

/// Epoch `epoch`'s order of the samples: a Fisher-Yates shuffle seeded by the epoch.
fn order(epoch: u64) -> Vec<usize> {
    let mut s = SEED ^ (epoch.wrapping_mul(0x1000_0000_01B3));
    let mut o: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        o.swap(i, j);
    }
    o
}

struct Model {
    store: ParamStore<f32>,
    ids: Vec<ParamId>,
    x: Vec<f32>,
    labels: Vec<usize>,
}

fn model() -> Model {
    let mut store = ParamStore::new();
    let mut ids = Vec::new();
    for (k, (name, shape)) in [
        ("w1", vec![D, H]),
        ("b1", vec![H]),
        ("w2", vec![H, C]),
        ("b2", vec![C]),
    ]
    .into_iter()
    .enumerate()
    {
        let n = shape.iter().product();
        ids.push(store.insert(
            name,
            Tensor::new(&shape, uniform(10 + k as u64, n, 0.7)).expect("shape"),
        ));
    }
    let x = uniform(1, N * D, 1.0);
    let labels = (0..N)
        .map(|i| {
            let s: f32 = x[i * D..(i + 1) * D].iter().sum();
            if s < -0.4 {
                0
            } else if s < 0.4 {
                1
            } else {
                2
            }
        })
        .collect();
    Model {
        store,
        ids,
        x,
        labels,
    }
}

impl Model {
    /// The cross-entropy summed over `samples`.
    fn loss<'t>(&self, tape: &'t Tape<f32>, samples: &[usize]) -> Var<'t, f32> {
        let n = samples.len();
        let x: Vec<f32> = samples
            .iter()
            .flat_map(|&i| self.x[i * D..(i + 1) * D].to_vec())
            .collect();
        let labels: Vec<usize> = samples.iter().map(|&i| self.labels[i]).collect();
        let x = tape.constant(Tensor::new(&[n, D], x).expect("shape"));
        let p = |k: usize| tape.param(&self.store, self.ids[k]);
        let h = (x.matmul(p(0)) + p(1)).tanh();
        (h.matmul(p(2)) + p(3)).cross_entropy(&labels) * n as f32
    }

    /// A micro-batch's gradients and loss, summed over its samples; with `dp`, each
    /// sample's gradient clipped (chunks of one micro-batch, so one process summing
    /// the global batch adds in the same order).
    fn micro(&self, samples: &[usize], dp: bool) -> Result<(ParamGrads<f32>, f64), Box<dyn Error>> {
        if dp {
            let opts = PerSampleOptions {
                clip_norm: Some(CLIP),
                chunk: MICRO,
                ..Default::default()
            };
            let out =
                per_sample_grads(&self.store, samples, opts, |tape, &i| self.loss(tape, &[i]))?;
            let loss = out.losses.iter().sum();
            return Ok((out.sum, loss));
        }
        let tape = Tape::new();
        let loss = self.loss(&tape, samples);
        let grads = loss.backward();
        Ok((ParamGrads::copy_of(&grads), f64::from(loss.value().item())))
    }
}

/// The global batch of step `(epoch, position)`: sample indices, and the next position.
fn batch(p: &checkpoint::Progress) -> (Vec<usize>, checkpoint::Progress) {
    let o = order(p.epoch);
    let start = p.position as usize * GLOBAL;
    let end = (start + GLOBAL).min(N);
    let mut next = checkpoint::Progress {
        step: p.step + 1,
        epoch: p.epoch,
        position: p.position + 1,
    };
    if end == N {
        next.epoch += 1;
        next.position = 0;
    }
    (o[start..end].to_vec(), next)
}

#[derive(Default)]
struct Args {
    mode: String,
    steps: u64,
    dp: bool,
    allreduce: bool,
    sharded: bool,
    adam: bool,
    freeze: Option<String>,
    out: Option<PathBuf>,
    ckpt: Option<PathBuf>,
    save_every: u64,
    resume: bool,
    die: Option<(usize, u64)>,
    nan: Option<(usize, u64)>,
    hang: Option<(usize, u64)>,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        save_every: 1,
        ..Default::default()
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().ok_or("a mode: reference, mpi or mismatch")?;
    let mut die = (None, None);
    let mut nan = (None, None);
    let mut hang = (None, None);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--steps" => a.steps = val()?.parse()?,
            "--dp" => a.dp = true,
            "--allreduce" => a.allreduce = true,
            "--sharded" => a.sharded = true,
            "--adam" => a.adam = true,
            "--freeze" => a.freeze = Some(val()?),
            "--out" => a.out = Some(val()?.into()),
            "--ckpt" => a.ckpt = Some(val()?.into()),
            "--save-every" => a.save_every = val()?.parse()?,
            "--resume" => a.resume = true,
            "--die-rank" => die.0 = Some(val()?.parse()?),
            "--die-step" => die.1 = Some(val()?.parse()?),
            "--nan-rank" => nan.0 = Some(val()?.parse()?),
            "--nan-step" => nan.1 = Some(val()?.parse()?),
            "--hang-rank" => hang.0 = Some(val()?.parse()?),
            "--hang-step" => hang.1 = Some(val()?.parse()?),
            f => return Err(format!("unknown flag {f}").into()),
        }
    }
    a.die = die.0.zip(die.1);
    a.nan = nan.0.zip(nan.1);
    a.hang = hang.0.zip(hang.1);
    Ok(a)
}

fn write_out(
    path: &Option<PathBuf>,
    store: &ParamStore<f32>,
    loss: f64,
) -> Result<(), Box<dyn Error>> {
    let mut text = String::new();
    for (_, name, v) in store.iter() {
        for x in v.data() {
            text += &format!("{name} {:08x}\n", x.to_bits());
        }
    }
    text += &format!("loss {:016x} {loss:e}\n", loss.to_bits());
    if let Some(p) = path {
        std::fs::File::create(p)?.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// With `--freeze NAME`: that parameter is not trained (a gap in the flat layout).
fn freeze(m: &mut Model, a: &Args) -> Result<(), Box<dyn Error>> {
    if let Some(name) = &a.freeze {
        let id = m.store.find(name).ok_or(format!("no parameter {name}"))?;
        m.store.set_requires_grad(id, false);
    }
    Ok(())
}

fn sgd() -> Sgd<f32> {
    Sgd::new(0.2).momentum(0.9)
}

/// With `--adam`: per-parameter step counts as well as buffers in its state.
fn adam() -> Adam<f32> {
    Adam::new(0.01).amsgrad(true)
}

/// One process, gradient accumulation (`descent_optim::accumulate`); with `--dp`,
/// `per_sample_grads` over the whole global batch.
fn reference<O: Optimizer<f32>>(a: &Args, mut opt: O) -> Result<(), Box<dyn Error>> {
    let mut m = model();
    freeze(&mut m, a)?;
    let mut progress = checkpoint::Progress::default();
    let mut loss = 0.0;
    while progress.step < a.steps {
        let (samples, next) = batch(&progress);
        let batches = MicroBatches::new(samples.len(), MICRO)?;
        let (grads, l) = if a.dp {
            let opts = PerSampleOptions {
                clip_norm: Some(CLIP),
                chunk: MICRO,
                ..Default::default()
            };
            let out = per_sample_grads(&m.store, &samples, opts, |tape, &i| m.loss(tape, &[i]))?;
            let mut flat = FlatGrads::zeros_like(&m.store);
            flat.set(&out.sum)?;
            (flat, out.losses.iter().sum::<f64>() / samples.len() as f64)
        } else {
            accumulate_mean(&m.store, batches, |r: Range<usize>| {
                m.micro(&samples[r], false)
            })?
        };
        step(&mut m, &mut opt, &grads, samples.len(), progress.step, a.dp)?;
        loss = l;
        progress = next;
    }
    write_out(&a.out, &m.store, loss)
}

/// The step every process takes: from the summed gradients with DP-SGD, from the
/// mean otherwise.
fn step(
    m: &mut Model,
    opt: &mut impl Optimizer<f32>,
    grads: &FlatGrads<f32>,
    n: usize,
    k: u64,
    dp: bool,
) -> Result<(), Box<dyn Error>> {
    if dp {
        let g = noisy_mean(
            grads,
            n,
            SIGMA,
            CLIP,
            SEED.wrapping_mul(1_000_003).wrapping_add(k),
        )?;
        opt.step(&mut m.store, &g)?;
    } else {
        opt.step(&mut m.store, grads)?;
    }
    Ok(())
}

fn distributed<O: Optimizer<f32> + Clone>(a: &Args, mut opt: O) -> Result<(), Box<dyn Error>> {
    let universe = mpi::initialize().ok_or("MPI is initialised already")?;
    let world = universe.world();
    let reduction = if a.allreduce {
        Reduction::AllReduce
    } else {
        Reduction::Ordered
    };
    let dp = DataParallel::new(&world).with_reduction(reduction);
    let mut m = model();
    freeze(&mut m, a)?;
    // Only rank 0's initial values count: the others start from garbage.
    if dp.rank() != 0 {
        let ids: Vec<_> = m.store.ids().collect();
        for id in ids {
            m.store
                .get_mut(id)
                .expect("id")
                .data_mut()
                .iter_mut()
                .for_each(|x| *x = 123.0);
        }
    }
    dp.broadcast_params(&mut m.store)?;
    // Sharded: each rank steps only its shard of the parameters (and keeps that
    // shard of the momentum); the bits must still be one process's.
    let mut sharded = match (a.sharded, a.dp) {
        (true, true) => {
            return Err("--sharded takes no --dp (DP-SGD's noise needs the whole sum)".into());
        }
        (true, false) => Some(ShardedOptimizer::new(&dp, &m.store, opt.clone())?),
        (false, _) => None,
    };
    let mut progress = checkpoint::Progress::default();
    if a.resume {
        let dir = a.ckpt.as_ref().ok_or("--resume needs --ckpt")?;
        let loaded = match &mut sharded {
            Some(sh) => checkpoint::load_sharded(&dp, dir, &mut m.store, sh)?,
            None => checkpoint::load(&dp, dir, &mut m.store, &mut opt)?,
        };
        if let Some(p) = loaded {
            progress = p;
            if dp.rank() == 0 {
                eprintln!("resumed at step {} on {} ranks", p.step, dp.size());
            }
        }
    }
    let mut loss = 0.0;
    let mut grads = FlatGrads::zeros_like(&m.store);
    while progress.step < a.steps {
        let (samples, next) = batch(&progress);
        let batches = MicroBatches::new(samples.len(), MICRO)?;
        let k = progress.step;
        let micro = |r: Range<usize>| {
            let mut out = m.micro(&samples[r], a.dp);
            if a.nan == Some((dp.rank(), k))
                && let Ok((g, _)) = &mut out
                && let Some((_, t)) = g.iter_mut().last()
            {
                t.data_mut()[0] = f32::NAN;
            }
            if a.die == Some((dp.rank(), k)) {
                eprintln!(
                    "dp_check: rank {} dies in the middle of step {k} (--die-rank)",
                    dp.rank()
                );
                std::process::abort();
            }
            if a.hang == Some((dp.rank(), k)) {
                eprintln!(
                    "dp_check: rank {} stops answering at step {k} (--hang-rank)",
                    dp.rank()
                );
                std::thread::sleep(Duration::from_secs(3600));
            }
            out
        };
        // DP-SGD adds noise to the sum; the plain step takes the mean, formed in the
        // reduction (scaled in cache) as accumulate_mean forms it on one process.
        if let Some(sh) = &mut sharded {
            loss = sh.gradient_mean(&dp, &m.store, batches, micro)?;
            sh.step(&dp, &mut m.store)?;
        } else {
            loss = if a.dp {
                dp.gradient_sum_into(&m.store, batches, &mut grads, micro)? / samples.len() as f64
            } else {
                dp.gradient_mean_into(&m.store, batches, &mut grads, micro)?
            };
            step(&mut m, &mut opt, &grads, samples.len(), k, a.dp)?;
        }
        progress = next;
        if let Some(dir) = &a.ckpt
            && progress.step % a.save_every == 0
        {
            match &sharded {
                Some(sh) => checkpoint::save_sharded(&dp, dir, &m.store, sh, progress)?,
                None => checkpoint::save(&dp, dir, &m.store, &opt, progress)?,
            }
        }
    }
    if dp.rank() == 0 {
        write_out(&a.out, &m.store, loss)?;
    }
    Ok(())
}

/// Rank 1 builds `w2` as `[8, 4]`: every rank must report rank 1, position 2.
fn mismatch() -> Result<(), Box<dyn Error>> {
    let universe = mpi::initialize().ok_or("MPI is initialised already")?;
    let world = universe.world();
    let dp = DataParallel::new(&world);
    let mut store = ParamStore::<f32>::new();
    store.insert("w1", Tensor::<f32>::zeros(&[D, H]));
    store.insert("b1", Tensor::<f32>::zeros(&[H]));
    store.insert(
        "w2",
        Tensor::<f32>::zeros(&[H, if dp.rank() == 1 { 4 } else { C }]),
    );
    match dp.broadcast_params(&mut store) {
        Err(e) if dp.size() > 1 => {
            let msg = e.to_string();
            let want = "rank 1 has 'w2' [8, 4] at position 2, rank 0 has 'w2' [8, 3]";
            if !msg.contains(want) {
                return Err(format!("rank {}: wrong error: {msg}", dp.rank()).into());
            }
            if dp.rank() == 0 {
                println!("mismatch reported on every rank: {msg}");
            }
            Ok(())
        }
        Err(e) => Err(format!("one rank cannot mismatch, got {e}").into()),
        Ok(()) if dp.size() == 1 => Ok(()),
        Ok(()) => Err("a mismatch went unreported".into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let a = args()?;
    match a.mode.as_str() {
        "reference" if a.adam => reference(&a, adam()),
        "reference" => reference(&a, sgd()),
        "mpi" => {
            let result = if a.adam {
                distributed(&a, adam())
            } else {
                distributed(&a, sgd())
            };
            if let Err(e) = result {
                // mpirun ends every rank as soon as one exits with an error: waiting a
                // moment lets the other ranks, which fail at the same point, say so too
                // (the checks count the ranks that refused a step).
                eprintln!("Error: {e:?}");
                std::thread::sleep(Duration::from_secs(1));
                std::process::exit(1);
            }
            Ok(())
        }
        "mismatch" => mismatch(),
        m => Err(format!("unknown mode {m}").into()),
    }
}
