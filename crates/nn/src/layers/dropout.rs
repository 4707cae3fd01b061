//! `Dropout`: in training, each element zeroed with probability `p` and the rest
//! scaled by `1/(1-p)`; in evaluation, the identity.

use crate::Error;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, Var};
use descent_tensor::{Float, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;

/// Dropout, as PyTorch's `nn.Dropout(p)`: in training mode `y = x · m` with
/// `m = bernoulli(1 - p) / (1 - p)` drawn per element, so `∂y/∂x = m` (the mask is a
/// constant on the tape and the product an ordinary `mul`); in evaluation mode
/// `y = x`, recording nothing.
///
/// The masks come from a seeded ChaCha8 stream of the module's own: call `k` (from 0)
/// draws from stream `k` of the generator seeded with `seed`, one uniform `f64` per
/// element in row-major order, an element kept when it is at least `p`. The same seed
/// gives the same masks on every machine and thread count; PyTorch's own generator
/// is not reproduced, so agreement with PyTorch is for a given mask.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{Ctx, Module, layers::Dropout};
/// use descent_tensor::Tensor;
/// let tape = descent_tape::Tape::<f64>::new();
/// let mut store = descent_tape::ParamStore::new();
/// let drop = Dropout::new(0.5, 42);
/// let x = tape.var(Tensor::<f64>::ones(&[1000]));
/// let y = drop.call(&mut Ctx::new(&tape, &mut store), x);
/// let kept = y.value().data().iter().filter(|&&v| v != 0.0).count();
/// assert!((400..600).contains(&kept), "{kept}");
/// assert!(y.value().data().iter().all(|&v| v == 0.0 || v == 2.0));
/// // The gradient is the mask.
/// assert_eq!(y.sum().backward().wrt(x).to_tensor(), y.value());
/// // Evaluation mode: the identity, the same node.
/// let mut cx = Ctx::new(&tape, &mut store).eval();
/// assert_eq!(drop.call(&mut cx, x).id(), x.id());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    name: String,
    p: f64,
    seed: u64,
    calls: Cell<u64>,
}

impl Dropout {
    /// Dropout with probability `p` of zeroing an element, masks from `seed`.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1]` (see [`Dropout::try_new`]).
    pub fn new(p: f64, seed: u64) -> Self {
        match Self::try_new(p, seed) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Dropout::new`].
    ///
    /// ```
    /// let err = descent_nn::layers::Dropout::try_new(1.5, 0).unwrap_err();
    /// assert_eq!(err.to_string(), "dropout: the probability p must be in [0, 1], got 1.5");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `p` is not in `[0, 1]`.
    pub fn try_new(p: f64, seed: u64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Config {
                layer: "dropout".into(),
                reason: format!("the probability p must be in [0, 1], got {p}"),
            });
        }
        Ok(Self {
            name: String::new(),
            p,
            seed,
            calls: Cell::new(0),
        })
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The mask the next training-mode call will use for an input of `shape` (the
    /// stream is not advanced).
    pub fn next_mask<T: Float>(&self, shape: &[usize]) -> Tensor<T> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.calls.get());
        let scale = if self.p < 1.0 {
            T::from_f64(1.0 / (1.0 - self.p))
        } else {
            T::zero()
        };
        let mut mask = Tensor::<T>::zeros(shape);
        for m in mask.data_mut() {
            let u: f64 = rng.random();
            *m = if u >= self.p { scale } else { T::zero() };
        }
        mask
    }
}

impl ModuleInfo for Dropout {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn entries(&self, _out: &mut Vec<(ParamId, EntryKind)>) {}
}

impl<T: Float> Module<T> for Dropout {
    fn record<'t>(&self, cx: &mut Ctx<'t, '_, T>, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        x.validate("dropout")?;
        if !cx.is_training() || self.p == 0.0 {
            return Ok(x);
        }
        let mask = self.next_mask::<T>(&x.shape());
        self.calls.set(self.calls.get() + 1);
        let _scope = cx.tape().scope(&self.name);
        let m = cx.tape().constant(mask);
        Ok(x.try_mul(m)?)
    }
}
