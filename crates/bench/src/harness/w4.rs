//! W4: per-sample gradients of a 64-128-10 MLP in parallel, each clipped, then averaged
//! (one DP-SGD step a batch); the first batch's averaged gradient is checked against
//! the peers' and can be dumped for `compare_w4.py`.

use super::{CEILING_TRIALS, Line, ceiling_median, secs};
use crate::Args;
use descent::backprop::ParamGrads;
use descent_bench::alloc_count;
use descent_bench::ceiling;
use descent_bench::npz;
use descent_bench::stats::{Summary, rel_err};
use descent_bench::w4;
use serde_json::json;
use std::time::Instant;

/// The peers' averaged clipped gradient of the first batch, as `first_avg_grad_l2` and
/// `first_avg_grad_sum` of their W4 lines (JAX `jit(vmap(grad))`, f32).
const W4_PEER_L2: f64 = 0.06308057904243469;
/// See [`W4_PEER_L2`].
const W4_PEER_SUM: f64 = -0.055682091678047385;
/// W4's tolerance (WORKLOADS.md: f32, 1e-5 relative).
const W4_TOL: f64 = 1e-5;

fn f32_bits(g: &ParamGrads<f32>) -> Vec<u32> {
    g.iter()
        .flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits()))
        .collect()
}

pub fn bench(args: &Args) -> bool {
    use descent::optim::Sgd;
    let data = w4::Data::new();
    let samples = data.samples();
    let mut times = Vec::new();
    // The first batch of every repetition: its averaged clipped gradient and per-sample
    // figures (the same each time, starting from the same parameters).
    let mut first: Option<(ParamGrads<f32>, Vec<f64>, Vec<f64>)> = None;
    let mut first_same = true;
    let mut finals: Vec<Vec<u32>> = Vec::new();
    let mut ceilings = Vec::new();
    for _ in 0..args.reps {
        ceilings.extend(ceiling::parallel_ceiling(CEILING_TRIALS));
        let mut model = w4::Model::new(&data);
        let mut sgd = Sgd::new(w4::LR);
        let mut t0 = Instant::now();
        for k in 0..w4::WARMUP + w4::BATCHES {
            if k == w4::WARMUP {
                t0 = Instant::now();
            }
            let out = w4::step(&mut model, &samples, &mut sgd);
            if k == 0 {
                let mean = out.mean();
                match &first {
                    None => first = Some((mean, out.norms, out.losses)),
                    Some((m, _, _)) => first_same &= f32_bits(m) == f32_bits(&mean),
                }
            }
        }
        times.push(secs(t0) / w4::BATCHES as f64 * 1e3);
        ceilings.extend(ceiling::parallel_ceiling(CEILING_TRIALS));
        finals.push(
            model
                .store
                .iter()
                .flat_map(|(_, _, v)| v.data().iter().map(|x| x.to_bits()))
                .collect(),
        );
    }
    // Heap calls per batch once warm, counted on the calling thread and on every
    // thread of the pool (the per-sample passes run there). Then, from the same warm
    // model, each thread's own sample time: it shows whether the machine gave every
    // thread the same speed (on this shared VM a vCPU can run a third slower for a
    // whole process), apart from the waits between threads.
    let (allocs, by_worker) = {
        const COUNTED: u64 = 10;
        let mut model = w4::Model::new(&data);
        let mut sgd = Sgd::new(w4::LR);
        for _ in 0..w4::WARMUP {
            w4::step(&mut model, &samples, &mut sgd);
        }
        let c0 = alloc_count::counts_with_pool();
        for _ in 0..COUNTED {
            w4::step(&mut model, &samples, &mut sgd);
        }
        let c = alloc_count::counts_with_pool() - c0;
        let allocs = (
            c.calls() as f64 / COUNTED as f64,
            c.bytes as f64 / COUNTED as f64,
        );
        let by_worker = w4::timed_by_worker(&mut model, &samples, &mut sgd, w4::BATCHES);
        (allocs, by_worker)
    };
    let workers: Vec<_> = by_worker
        .workers
        .iter()
        .map(|w| {
            json!({
                "thread": w.thread,
                "samples": w.samples,
                "batches": w.batches,
                "sample_us": w.sample_us,
                "first_start_us": w.first_start_us,
            })
        })
        .collect();
    let (avg, norms, losses) = first.expect("at least one repetition");
    let flat: Vec<f64> = avg
        .iter()
        .flat_map(|(_, g)| g.data().iter().map(|&x| x as f64))
        .collect();
    let l2 = flat.iter().map(|x| x * x).sum::<f64>().sqrt();
    let sum = flat.iter().sum::<f64>();
    let norms_mean = norms.iter().sum::<f64>() / norms.len() as f64;
    let clipped = norms.iter().filter(|&&n| n > w4::CLIP).count() as f64 / norms.len() as f64;
    let peer = W4_PEER_L2.is_finite().then_some((W4_PEER_L2, W4_PEER_SUM));
    let l2_err = peer.map(|(p, _)| rel_err(l2, p));
    let sum_err = peer.map(|(_, p)| rel_err(sum, p));
    let ok = l2_err.is_none_or(|e| e <= W4_TOL);

    let mut dumped = None;
    let mut dump_ok = true;
    if let Some(dir) = &args.dump {
        let path = std::path::Path::new(dir).join("w4_descent.npz");
        let mut arrays: Vec<(String, Vec<u8>)> = avg
            .iter()
            .enumerate()
            .map(|(i, (_, g))| (format!("arr_{i}"), descent::data::encode_npy(g)))
            .collect();
        let norms32 = descent::Tensor::from_fn(&[norms.len()], |i| norms[i] as f32);
        arrays.push(("norms".into(), descent::data::encode_npy(&norms32)));
        match std::fs::create_dir_all(dir).and_then(|()| npz::write_npz(&path, arrays)) {
            Ok(()) => dumped = Some(path.display().to_string()),
            Err(e) => {
                eprintln!("W4: cannot write {}: {e}", path.display());
                dump_ok = false;
            }
        }
    }

    let threads = rayon::current_num_threads();
    let ms = Summary::of(&times);
    Line::new(args, "W4")
        .add(json!({
            "variant": "per_sample_grads (rayon, fixed-order reduction)",
            "batches": w4::BATCHES,
            "warmup": w4::WARMUP,
            "ms_per_batch": ms,
            "first_avg_grad_l2": l2,
            "first_avg_grad_sum": sum,
            "first_norms_mean": norms_mean,
            "clipped_fraction": clipped,
            "rayon_threads": threads,
            "chunk": w4::options().chunk,
            "clip_norm": w4::CLIP,
            "lr": w4::LR,
            "us_per_sample": ms.median * 1e3 / w4::BATCH as f64,
            "first_loss_mean": losses.iter().sum::<f64>() / losses.len() as f64,
            "parallel_ceiling": ceiling_median(&ceilings),
            "workers": workers,
        }))
        .add(json!({
            "allocs_per_batch": allocs.0,
            "alloc_bytes_per_batch": allocs.1,
            "peer_first_avg_grad_l2": peer.map(|p| p.0),
            "first_avg_grad_l2_rel_err": l2_err,
            "first_avg_grad_sum_rel_err": sum_err,
            "correct": ok,
            "first_avg_equal_across_reps": first_same,
            "final_params_equal_across_reps": finals.iter().all(|f| *f == finals[0]),
            "dump": dumped,
        }))
        .print();
    ok && first_same && dump_ok
}
