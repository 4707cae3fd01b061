//! Gradient clipping: by value, by global L2 norm, by each parameter's norm.
//!
//! `f32::clamp(NaN)` is NaN, so clipping alone never cleans a NaN: every function here
//! refuses non-finite gradients with [`Error::NonFinite`] and leaves them untouched.

use crate::Error;
use descent_backprop::ParamGrads;
use descent_tensor::Float;

fn refuse_non_finite<T: Float>(op: &'static str, grads: &ParamGrads<T>) -> Result<(), Error> {
    for (i, (_, g)) in grads.iter().enumerate() {
        if let Some((index, v)) = g.data().iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                op,
                name: format!("#{i} in the gradients"),
                index,
                value: v.as_f64(),
            });
        }
    }
    Ok(())
}

fn check_limit(op: &'static str, limit: f64) -> Result<(), Error> {
    if limit.is_finite() && limit > 0.0 {
        Ok(())
    } else {
        Err(Error::Config {
            op,
            reason: format!("the limit must be finite and > 0, got {limit}"),
        })
    }
}

/// Scales all gradients together so their global L2 norm is at most `max_norm`, and
/// returns the norm before clipping (as PyTorch's `clip_grad_norm_` does). The scale
/// is `max_norm / norm` when the norm exceeds `max_norm`; otherwise nothing changes.
///
/// ```
/// use descent_backprop::ParamGrads;
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let (a, b) = (store.insert("a", Tensor::from([3.0])), store.insert("b", Tensor::from([4.0])));
/// let mut grads: ParamGrads<f64> =
///     [(a, Tensor::from([3.0])), (b, Tensor::from([4.0]))].into_iter().collect();
/// let before = descent_optim::clip_grad_norm(&mut grads, 1.0).unwrap();
/// assert_eq!(before, 5.0);
/// assert!((grads.global_norm() - 1.0).abs() < 1e-15);
/// ```
pub fn clip_grad_norm<T: Float>(grads: &mut ParamGrads<T>, max_norm: f64) -> Result<f64, Error> {
    check_limit("clip_grad_norm", max_norm)?;
    refuse_non_finite("clip_grad_norm", grads)?;
    let norm = grads.global_norm();
    if norm > max_norm {
        grads.scale(T::from_f64(max_norm / norm));
    }
    Ok(norm)
}

/// Clamps every gradient element into `[-limit, limit]`.
///
/// ```
/// use descent_backprop::ParamGrads;
/// use descent_tape::ParamStore;
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let a = store.insert("a", Tensor::from([0.0, 0.0]));
/// let mut grads: ParamGrads<f64> = [(a, Tensor::from([-3.0, 0.5]))].into_iter().collect();
/// descent_optim::clip_grad_value(&mut grads, 1.0).unwrap();
/// assert_eq!(grads.get(a).unwrap().data(), &[-1.0, 0.5]);
/// ```
pub fn clip_grad_value<T: Float>(grads: &mut ParamGrads<T>, limit: f64) -> Result<(), Error> {
    check_limit("clip_grad_value", limit)?;
    refuse_non_finite("clip_grad_value", grads)?;
    let l = T::from_f64(limit);
    for (_, g) in grads.iter_mut() {
        g.data_mut().iter_mut().for_each(|x| *x = x.max(-l).min(l));
    }
    Ok(())
}

/// Scales each parameter's gradient on its own so its L2 norm is at most `max_norm`;
/// returns each norm before clipping, in order.
pub fn clip_grad_norm_per_param<T: Float>(
    grads: &mut ParamGrads<T>,
    max_norm: f64,
) -> Result<Vec<f64>, Error> {
    check_limit("clip_grad_norm_per_param", max_norm)?;
    refuse_non_finite("clip_grad_norm_per_param", grads)?;
    let mut norms = Vec::with_capacity(grads.len());
    for (_, g) in grads.iter_mut() {
        let norm = g
            .data()
            .iter()
            .map(|x| x.as_f64() * x.as_f64())
            .sum::<f64>()
            .sqrt();
        if norm > max_norm {
            let s = T::from_f64(max_norm / norm);
            g.data_mut().iter_mut().for_each(|x| *x *= s);
        }
        norms.push(norm);
    }
    Ok(norms)
}
