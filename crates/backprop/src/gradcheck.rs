//! Gradient checking against central finite differences, in `f64`.

use crate::Error;
use crate::walk::{backward, backward_with};
use descent_tape::{Tape, Var};
use descent_tensor::Tensor;
use std::fmt;

/// How a gradient check perturbs and judges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradCheckOptions {
    /// The finite-difference step, scaled by `max(1, |x|)` for each element.
    pub step: f64,
    /// The largest mixed error accepted (see [`GradCheckReport::max_error`]).
    pub tolerance: f64,
}

impl Default for GradCheckOptions {
    /// Step `1e-6`, tolerance `1e-6`: central differences in `f64` are accurate to
    /// about `1e-10` relative at this step, far inside the tolerance.
    fn default() -> Self {
        Self {
            step: 1e-6,
            tolerance: 1e-6,
        }
    }
}

/// The element where analytic and numeric gradients disagree most.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// Which input.
    pub input: usize,
    /// Flat index of the element within that input.
    pub index: usize,
    /// The gradient backward computed.
    pub analytic: f64,
    /// The gradient central differences computed.
    pub numeric: f64,
}

/// What a gradient check found.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// Number of gradient elements compared.
    pub checked: usize,
    /// Largest `|analytic - numeric|`.
    pub max_abs_error: f64,
    /// Largest `|analytic - numeric| / max(1, |analytic|, |numeric|)`: relative for
    /// large gradients, absolute for small ones, so a gradient of 1e-9 is not judged
    /// by the rounding noise of its finite difference.
    pub max_error: f64,
    /// The element with the largest mixed error.
    pub worst: Option<Mismatch>,
    /// The tolerance the check was run with.
    pub tolerance: f64,
}

impl GradCheckReport {
    /// True when every element is within tolerance (and none is NaN).
    pub fn passed(&self) -> bool {
        self.max_error <= self.tolerance
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck {}: {} elements, max abs error {:.3e}, max error {:.3e} (tolerance {:.1e})",
            if self.passed() { "passed" } else { "FAILED" },
            self.checked,
            self.max_abs_error,
            self.max_error,
            self.tolerance
        )?;
        if let Some(w) = self.worst {
            write!(
                f,
                "; worst at input {} element {}: analytic {:e}, numeric {:e}",
                w.input, w.index, w.analytic, w.numeric
            )?;
        }
        Ok(())
    }
}

/// The fixed cotangent a non-scalar output is projected on: values in (-1, 1) from the
/// golden-ratio sequence, none zero, so every output element counts.
fn cotangent(shape: &[usize]) -> Tensor<f64> {
    let phi = 0.618_033_988_749_894_9_f64;
    Tensor::from_fn(shape, |i| {
        let v = ((i + 1) as f64 * phi).fract() * 2.0 - 1.0;
        if v.abs() < 0.05 { 0.5 } else { v }
    })
}

/// Compares the backward pass of `f` against central finite differences at `inputs`.
///
/// `f` builds a computation from variable leaves holding the inputs. A scalar output
/// is differentiated directly; any other output is projected on a fixed cotangent `r`
/// (the check is then of `Σ f(x) ⊙ r`, which exercises every output element).
///
/// ```
/// use descent_backprop::{gradcheck, GradCheckOptions};
/// use descent_tensor::Tensor;
/// let report = gradcheck(
///     &[Tensor::from([0.3, -1.2, 2.0])],
///     |_, x| x[0].tanh() * x[0],
///     GradCheckOptions::default(),
/// )
/// .unwrap();
/// assert!(report.passed(), "{report}");
/// ```
pub fn gradcheck<F>(
    inputs: &[Tensor<f64>],
    f: F,
    options: GradCheckOptions,
) -> Result<GradCheckReport, Error>
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::<f64>::new();
    // Analytic gradients.
    let analytic: Vec<Vec<f64>> = {
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|x| tape.var(x.clone())).collect();
        let out = f(&tape, &vars);
        let shape = out.shape();
        let grads = if shape.is_empty() {
            backward(out)?
        } else {
            backward_with(out, &cotangent(&shape))?
        };
        vars.iter().map(|v| grads.wrt(*v).data().to_vec()).collect()
    };
    let eval = |xs: &[Tensor<f64>]| -> f64 {
        tape.reset();
        let vars: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
        let out = f(&tape, &vars).value();
        if out.ndim() == 0 {
            out.item()
        } else {
            let r = cotangent(out.shape());
            out.data().iter().zip(r.data()).map(|(a, b)| a * b).sum()
        }
    };
    let mut report = GradCheckReport {
        checked: 0,
        max_abs_error: 0.0,
        max_error: 0.0,
        worst: None,
        tolerance: options.tolerance,
    };
    let mut xs: Vec<Tensor<f64>> = inputs.to_vec();
    for (j, grad) in analytic.iter().enumerate() {
        for (k, &a) in grad.iter().enumerate() {
            let x0 = xs[j].data()[k];
            let h = options.step * x0.abs().max(1.0);
            xs[j].data_mut()[k] = x0 + h;
            let up = eval(&xs);
            xs[j].data_mut()[k] = x0 - h;
            let down = eval(&xs);
            xs[j].data_mut()[k] = x0;
            let n = (up - down) / (2.0 * h);
            let abs = (a - n).abs();
            let err = abs / 1f64.max(a.abs()).max(n.abs());
            report.checked += 1;
            report.max_abs_error = report.max_abs_error.max(abs);
            // NaN compares false, so a NaN error is recorded explicitly.
            if err > report.max_error || err.is_nan() && !report.max_error.is_nan() {
                report.max_error = err;
                report.worst = Some(Mismatch {
                    input: j,
                    index: k,
                    analytic: a,
                    numeric: n,
                });
            }
        }
    }
    Ok(report)
}
