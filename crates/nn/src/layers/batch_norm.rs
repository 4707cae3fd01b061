//! `BatchNorm1d` and `BatchNorm2d`: each channel normalised over the batch (and
//! spatial axes) in training, by running statistics in evaluation.

use crate::Error;
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, ParamStore, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};

/// What batch norm of either kind holds: its parameters, its buffers, its settings.
#[derive(Clone, Debug, PartialEq)]
struct Core {
    name: String,
    num_features: usize,
    eps: f64,
    momentum: Option<f64>,
    weight: Option<ParamId>,
    bias: Option<ParamId>,
    running_mean: ParamId,
    running_var: ParamId,
    num_batches_tracked: ParamId,
}

impl Core {
    fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: String,
        num_features: usize,
        eps: f64,
        momentum: Option<f64>,
        affine: bool,
    ) -> Self {
        let c = [num_features];
        let (weight, bias) = if affine {
            (
                Some(store.insert(format!("{name}.weight"), Tensor::<T>::ones(&c))),
                Some(store.insert(format!("{name}.bias"), Tensor::<T>::zeros(&c))),
            )
        } else {
            (None, None)
        };
        let mut buffer = |suffix: &str, value: Tensor<T>| {
            let id = store.insert(format!("{name}.{suffix}"), value);
            store.set_requires_grad(id, false);
            id
        };
        let running_mean = buffer("running_mean", Tensor::zeros(&c));
        let running_var = buffer("running_var", Tensor::ones(&c));
        let num_batches_tracked = buffer("num_batches_tracked", Tensor::scalar(T::zero()));
        Self {
            name,
            num_features,
            eps,
            momentum,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        }
    }

    fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
        out.extend(self.weight.map(|w| (w, EntryKind::Param)));
        out.extend(self.bias.map(|b| (b, EntryKind::Param)));
        out.push((self.running_mean, EntryKind::Buffer));
        out.push((self.running_var, EntryKind::Buffer));
        out.push((self.num_batches_tracked, EntryKind::Buffer));
    }

    fn record<'t, T: Float>(
        &self,
        cx: &mut Ctx<'t, '_, T>,
        x: Var<'t, T>,
        op: &'static str,
        ranks: &[usize],
        expected: &str,
    ) -> Result<Var<'t, T>, Error> {
        x.validate(op)?;
        let shape = x.shape();
        if !ranks.contains(&shape.len()) || shape[1] != self.num_features {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}, but {op} of {} features takes {expected}",
                    ShapeDisplay(&shape),
                    self.num_features
                ),
            });
        }
        // Channels on axis 1; statistics over every other axis.
        let mut stat_shape = vec![1; shape.len()];
        stat_shape[1] = self.num_features;
        let count: usize = shape.iter().product::<usize>() / self.num_features;
        let reduce = |v: Var<'t, T>| -> Result<Var<'t, T>, Error> {
            let mut m = v.try_mean_axis(0, true)?;
            for a in 2..shape.len() {
                m = m.try_mean_axis(a as isize, true)?;
            }
            Ok(m)
        };
        let _scope = cx.tape().scope(&self.name);
        let tape = cx.tape();
        let eps = tape.constant(Tensor::scalar(T::from_f64(self.eps)));
        let y = if cx.is_training() {
            if count < 2 {
                return Err(Error::Config {
                    layer: self.name.clone(),
                    reason: format!(
                        "training needs more than one value per channel, got input shape {}",
                        ShapeDisplay(&shape)
                    ),
                });
            }
            let mean = reduce(x)?;
            let d = x.try_sub(mean)?;
            let var = reduce(d.try_mul(d)?)?;
            let y = d.try_div(var.try_add(eps)?.try_sqrt()?)?;
            self.update_running(cx.store_mut(), &mean.value(), &var.value(), count);
            y
        } else {
            let mean = cx.buffer(self.running_mean)?.try_reshape(&stat_shape)?;
            let var = cx.buffer(self.running_var)?.try_reshape(&stat_shape)?;
            x.try_sub(mean)?.try_div(var.try_add(eps)?.try_sqrt()?)?
        };
        let mut y = y;
        if let Some(w) = self.weight {
            y = y.try_mul(cx.param(w)?.try_reshape(&stat_shape)?)?;
        }
        if let Some(b) = self.bias {
            y = y.try_add(cx.param(b)?.try_reshape(&stat_shape)?)?;
        }
        Ok(y)
    }

    /// PyTorch's update: `running = (1 - m)·running + m·batch`, with the unbiased
    /// variance `var · n/(n - 1)`, and `m = 1/num_batches_tracked` (a cumulative
    /// average) when the momentum is `None`.
    fn update_running<T: Float>(
        &self,
        store: &mut ParamStore<T>,
        mean: &Tensor<T>,
        var: &Tensor<T>,
        count: usize,
    ) {
        let tracked = store.get_mut(self.num_batches_tracked).expect("own buffer");
        let n = tracked.data()[0].as_f64() + 1.0;
        tracked.data_mut()[0] = T::from_f64(n);
        let m = self.momentum.unwrap_or(1.0 / n);
        let unbias = count as f64 / (count as f64 - 1.0);
        let rm = store.get_mut(self.running_mean).expect("own buffer");
        for (r, b) in rm.data_mut().iter_mut().zip(mean.data()) {
            *r = T::from_f64((1.0 - m) * r.as_f64() + m * b.as_f64());
        }
        let rv = store.get_mut(self.running_var).expect("own buffer");
        for (r, b) in rv.data_mut().iter_mut().zip(var.data()) {
            *r = T::from_f64((1.0 - m) * r.as_f64() + m * b.as_f64() * unbias);
        }
    }
}

macro_rules! batch_norm {
    ($(#[$doc:meta])* $ty:ident, $ranks:expr, $expected:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $ty(Core);

        impl $ty {
            /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`, affine.
            pub fn new<T: Float>(
                store: &mut ParamStore<T>,
                name: impl Into<String>,
                num_features: usize,
            ) -> Self {
                Self::with_options(store, name, num_features, 1e-5, Some(0.1), true)
            }

            /// Every setting: `momentum` `None` averages over all batches seen
            /// (PyTorch's `momentum=None`); `affine` false has no weight and bias.
            pub fn with_options<T: Float>(
                store: &mut ParamStore<T>,
                name: impl Into<String>,
                num_features: usize,
                eps: f64,
                momentum: Option<f64>,
                affine: bool,
            ) -> Self {
                Self(Core::new(store, name.into(), num_features, eps, momentum, affine))
            }

            /// The weight's id (γ), if affine.
            pub fn weight(&self) -> Option<ParamId> {
                self.0.weight
            }
            /// The bias's id (β), if affine.
            pub fn bias(&self) -> Option<ParamId> {
                self.0.bias
            }
            /// The running mean's id (a buffer).
            pub fn running_mean(&self) -> ParamId {
                self.0.running_mean
            }
            /// The running variance's id (a buffer).
            pub fn running_var(&self) -> ParamId {
                self.0.running_var
            }
            /// The count of training batches seen (a 0-d buffer).
            pub fn num_batches_tracked(&self) -> ParamId {
                self.0.num_batches_tracked
            }
        }

        impl ModuleInfo for $ty {
            fn name(&self) -> &str {
                &self.0.name
            }
            fn kind(&self) -> &'static str {
                stringify!($ty)
            }
            fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
                self.0.entries(out)
            }
        }

        impl<T: Float> Module<T> for $ty {
            fn record<'t>(
                &self,
                cx: &mut Ctx<'t, '_, T>,
                x: Var<'t, T>,
            ) -> Result<Var<'t, T>, Error> {
                self.0.record(cx, x, stringify!($ty), $ranks, $expected)
            }
        }
    };
}

batch_norm!(
    /// Batch normalisation of `[N, C]` or `[N, C, L]`, as PyTorch's
    /// `nn.BatchNorm1d(C, eps, momentum, affine)`: per channel `c`,
    ///
    /// `y = (x - mean_c) / √(var_c + eps) · weight_c + bias_c`.
    ///
    /// In training mode `mean_c`, `var_c` are the batch's (over `N` and `L`, the
    /// variance biased) and the running statistics are updated
    /// (`running = (1 - momentum)·running + momentum·batch`, the variance unbiased);
    /// in evaluation mode the running statistics are used, as constants. Entries, as
    /// PyTorch's `state_dict`: `weight`, `bias` (parameters, ones and zeros),
    /// `running_mean`, `running_var`, `num_batches_tracked` (buffers: frozen entries
    /// of the store, saved and loaded by name, never trained).
    ///
    /// ```
    /// use descent_nn::{Ctx, Module, layers::BatchNorm1d};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let bn = BatchNorm1d::new(&mut store, "bn", 2);
    /// let tape = Tape::new();
    /// let x = tape.var(Tensor::from([[1.0, 10.0], [3.0, 30.0]]));
    /// let y = bn.call(&mut Ctx::new(&tape, &mut store), x).value();
    /// assert!((y.data()[0] + 1.0).abs() < 1e-4 && (y.data()[2] - 1.0).abs() < 1e-4);
    /// // Running mean 0.9·0 + 0.1·(2, 20); running variance 0.9·1 + 0.1·(2, 200).
    /// assert_eq!(store.get(bn.running_mean()).unwrap().data(), &[0.2, 2.0]);
    /// let rv = store.get(bn.running_var()).unwrap().data().to_vec();
    /// assert!((rv[0] - 1.1).abs() < 1e-12 && (rv[1] - 20.9).abs() < 1e-12);
    /// let names: Vec<String> = bn.state_dict_names(&store).into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]);
    /// ```
    BatchNorm1d, &[2, 3], "[N, C] or [N, C, L]"
);

batch_norm!(
    /// Batch normalisation of `[N, C, H, W]`, as PyTorch's
    /// `nn.BatchNorm2d(C, eps, momentum, affine)`: as [`BatchNorm1d`], the statistics
    /// of channel `c` taken over `N`, `H` and `W`.
    ///
    /// ```
    /// use descent_nn::{Ctx, Module, layers::BatchNorm2d};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f32>::new();
    /// let bn = BatchNorm2d::new(&mut store, "bn", 3);
    /// let tape = Tape::new();
    /// let x = tape.var(Tensor::<f32>::ones(&[2, 3, 4, 4]));
    /// let mut cx = Ctx::new(&tape, &mut store).eval();
    /// // Evaluation with fresh statistics (mean 0, variance 1): x / √(1 + eps).
    /// let y = bn.call(&mut cx, x).value();
    /// assert!((y.data()[0] - 1.0 / (1.0f32 + 1e-5).sqrt()).abs() < 1e-7);
    /// assert!(bn.try_call(&mut cx, tape.var(Tensor::<f32>::ones(&[2, 3]))).is_err());
    /// ```
    BatchNorm2d, &[4], "[N, C, H, W]"
);
