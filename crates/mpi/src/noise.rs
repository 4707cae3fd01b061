//! DP-SGD's noise, drawn once for the global batch.

use crate::Error;
use descent_backprop::PerSample;
use descent_optim::FlatGrads;
use descent_tape::ParamGrads;
use descent_tensor::Float;

/// One DP-SGD gradient from the global batch's sum of clipped per-sample gradients
/// (`sum`, as [`DataParallel::gradient_sum`](crate::DataParallel::gradient_sum)
/// returns it on every rank): Gaussian noise of standard deviation
/// `noise_multiplier × clip_norm` added to every element, then the whole divided by
/// `count`, the global batch.
///
/// It is [`PerSample::noisy_mean`] itself, so the noise is the one process's: a
/// ChaCha8 stream seeded by `seed`, drawn in parameter order. Every rank draws the
/// same stream from the same seed (seed it by the step), so the noise is drawn "once"
/// without a message, and every rank steps alike.
///
/// # Errors
/// [`Error::Backprop`] for a negative or non-finite standard deviation.
///
/// ```
/// use descent_mpi::noisy_mean;
/// use descent_optim::FlatGrads;
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// store.insert("w", Tensor::from([0.0, 0.0]));
/// let mut sum = FlatGrads::zeros_like(&store);
/// sum.as_mut_slice().copy_from_slice(&[4.0, 8.0]);
/// let quiet = noisy_mean(&sum, 4, 0.0, 1.0, 7).unwrap();
/// assert_eq!(quiet.iter().next().unwrap().1.data(), &[1.0, 2.0]);
/// let a = noisy_mean(&sum, 4, 1.0, 1.0, 7).unwrap();
/// assert_eq!(a, noisy_mean(&sum, 4, 1.0, 1.0, 7).unwrap()); // same seed, same noise
/// ```
pub fn noisy_mean<T: Float>(
    sum: &FlatGrads<T>,
    count: usize,
    noise_multiplier: f64,
    clip_norm: f64,
    seed: u64,
) -> Result<ParamGrads<T>, Error> {
    let total = PerSample {
        sum: sum.to_param_grads(),
        count,
        losses: Vec::new(),
        norms: Vec::new(),
        per_sample: None,
        skipped: Vec::new(),
    };
    Ok(total.noisy_mean(noise_multiplier, clip_norm, seed)?)
}
