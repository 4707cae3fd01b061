//! `Linear` (an affine map with PyTorch's `[out, in]` weight), activations, and `Mlp`,
//! a stack of `Linear` layers.

use crate::Error;
use crate::init::Init;
use descent_tape::{ParamId, ParamStore, Tape, Var};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::Rng;

/// A fully connected layer, `y = x @ Wᵀ + b`, as PyTorch's `nn.Linear`.
///
/// Its parameters live in a [`ParamStore`] under `"<name>.weight"` (shape
/// `[out, in]`, PyTorch's layout) and `"<name>.bias"` (shape `[out]`); the layer
/// itself only holds their ids, so it is `Clone`, cheap, and independent of the
/// element type. [`Linear::forward`] binds them on a tape and records the product
/// inside `tape.scope(name)`.
///
/// The layer's output, the pre-activation `z = x @ Wᵀ + b`, is the node named
/// `"<name>.z"`, so `grads.named(&tape, "fc.z")` is `∂L/∂z`: the error vector δ of
/// the layer as the backpropagation literature defines it (before the activation; see
/// `docs/GLOSSARY.md`). An activation applied after the layer is not part of it;
/// [`Mlp`] names that output `"<name>.a"`.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{Linear, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f32>::new();
/// let fc = Linear::new(&mut store, "fc", 3, 2, &mut init::rng(0));
/// assert_eq!(store.name(fc.weight()), Some("fc.weight"));
/// assert_eq!(store.get(fc.weight()).unwrap().shape(), &[2, 3]);
///
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
/// let y = fc.forward(&tape, &store, x);
/// assert_eq!(y.shape().as_slice(), &[2, 2]);
/// assert_eq!(tape.read().scope_of(y.id()), "fc");
/// assert_eq!(tape.read().name(y.id()), Some("fc.z"));
///
/// // y[0, 0] = x[0] · W[0] + b[0]
/// let (w, b) = (store.get(fc.weight()).unwrap(), store.get(fc.bias().unwrap()).unwrap());
/// let y00 = w.data()[0] + 2.0 * w.data()[1] + 3.0 * w.data()[2] + b.data()[0];
/// assert!((y.value().data()[0] - y00).abs() < 1e-6);
///
/// // The gradient comes back keyed by the parameter.
/// let grads = y.sum().backward();
/// assert_eq!(grads.param(fc.weight()).unwrap().data(), &[5.0, 7.0, 9.0, 5.0, 7.0, 9.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    name: String,
    /// `"<name>.z"`, the name of the output node, made once rather than every forward.
    z_name: String,
    in_features: usize,
    out_features: usize,
    weight: ParamId,
    bias: Option<ParamId>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation: weight and bias both
    /// U(-1/√in, 1/√in) (zeros when `in_features` is 0), drawn weight first.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let bound = if in_features > 0 {
            1.0 / (in_features as f64).sqrt()
        } else {
            0.0
        };
        let init = Init::Uniform {
            low: -bound,
            high: bound,
        };
        Self::with_init(
            store,
            name,
            in_features,
            out_features,
            init,
            Some(init),
            rng,
        )
        .expect("a finite symmetric uniform initialiser cannot fail")
    }

    /// A layer whose weight is drawn from `weight` and whose bias is drawn from `bias`
    /// (`None`: no bias), weight first.
    ///
    /// ```
    /// use descent_nn::{Linear, init::{self, Init, Nonlinearity}};
    /// use descent_tape::ParamStore;
    /// let mut store = ParamStore::<f64>::new();
    /// let he = Init::KaimingNormal { gain: Nonlinearity::Relu.gain() };
    /// let fc = Linear::with_init(&mut store, "fc", 4, 8, he, Some(Init::Zeros), &mut init::rng(1))
    ///     .unwrap();
    /// assert_eq!(store.get(fc.bias().unwrap()).unwrap().data(), &[0.0; 8]);
    /// let no_bias = Linear::with_init(&mut store, "proj", 8, 2, he, None, &mut init::rng(1)).unwrap();
    /// assert_eq!(no_bias.bias(), None);
    /// assert_eq!(store.len(), 3);
    /// ```
    ///
    /// # Errors
    /// [`Error::Init`] when an initialiser refuses the shape (a fan-based one for the
    /// bias, say) or its parameters; the store is left unchanged.
    pub fn with_init<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_features: usize,
        out_features: usize,
        weight: Init,
        bias: Option<Init>,
        rng: &mut impl Rng,
    ) -> Result<Self, Error> {
        let w = weight.try_tensor::<T>(&[out_features, in_features], rng)?;
        let b = bias
            .map(|b| b.try_tensor::<T>(&[out_features], rng))
            .transpose()?;
        Self::from_tensors(store, name, w, b)
    }

    /// A layer with the given values: `weight` `[out, in]`, `bias` `[out]` (or none).
    /// For loading parameters computed elsewhere (a checkpoint, a reference
    /// implementation's initial values).
    ///
    /// ```
    /// use descent_nn::Linear;
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = Tensor::from([[1.0, 2.0, 3.0]]);
    /// let fc = Linear::from_tensors(&mut store, "fc", w, Some(Tensor::from([0.5]))).unwrap();
    /// assert_eq!((fc.in_features(), fc.out_features()), (3, 1));
    /// let err = Linear::from_tensors(&mut store, "bad", Tensor::from([[1.0]]), Some(Tensor::from([1.0, 2.0])));
    /// assert_eq!(err.unwrap_err().to_string(), "bad: the bias should have shape [1], got [2]");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the weight is not 2-d, [`Error::ParamShape`] when the bias
    /// is not `[out]`; the store is left unchanged.
    pub fn from_tensors<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
    ) -> Result<Self, Error> {
        let name = name.into();
        if weight.ndim() != 2 {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "the weight should be 2-d [out, in], got shape {}",
                    ShapeDisplay(weight.shape())
                ),
            });
        }
        let (out_features, in_features) = (weight.shape()[0], weight.shape()[1]);
        if let Some(found) = bias
            .as_ref()
            .map(|b| b.shape())
            .filter(|s| *s != [out_features])
        {
            return Err(Error::ParamShape {
                layer: name,
                what: "the bias",
                expected: vec![out_features],
                found: found.to_vec(),
            });
        }
        let weight = store.insert(format!("{name}.weight"), weight);
        let bias = bias.map(|b| store.insert(format!("{name}.bias"), b));
        Ok(Self {
            z_name: format!("{name}.z"),
            name,
            in_features,
            out_features,
            weight,
            bias,
        })
    }

    /// The layer's name: the prefix of its parameters' names and its scope on a tape.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of input features (the weight's second axis).
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Number of output features (the weight's first axis).
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weight's id, `[out, in]`.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    /// The bias's id, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }

    /// `x @ Wᵀ + b` for `x` of shape `[..., in]` (at least 2 axes: a single sample is
    /// `[1, in]`), giving `[..., out]`; recorded inside `tape.scope(name)`, the output
    /// named `"<name>.z"`.
    ///
    /// To apply the layer many times on one tape (at every step of a recurrence),
    /// [`Linear::bind`] it once: that records the transpose of the weight once.
    ///
    /// # Panics
    /// With the message of [`Linear::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        match self.try_forward(tape, store, x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Linear::forward`]: an error when `x`'s last axis is not
    /// `in_features`, when the parameters are not in `store`, or when `x` is a stale or
    /// foreign handle.
    ///
    /// ```
    /// use descent_nn::{Linear, init};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let fc = Linear::new(&mut store, "enc.fc1", 3, 2, &mut init::rng(0));
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::<f64>::zeros(&[5, 4]));
    /// let err = fc.try_forward(&tape, &store, x).unwrap_err().to_string();
    /// assert_eq!(err, "enc.fc1: the input has shape [5, 4], whose last axis should be the layer's 3 input features");
    /// ```
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        self.check_input(x)?;
        self.try_bind(tape, store)?.try_forward(x)
    }

    /// Binds the parameters on `tape` and records `Wᵀ` once, for applying the layer
    /// many times on this tape.
    ///
    /// ```
    /// use descent_nn::{Linear, init};
    /// use descent_tape::{ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f32>::new();
    /// let cell = Linear::new(&mut store, "cell", 4, 4, &mut init::rng(0));
    /// let tape = Tape::new();
    /// let bound = cell.bind(&tape, &store);
    /// let mut h = tape.constant(Tensor::<f32>::ones(&[1, 4]));
    /// for _ in 0..10 {
    ///     h = bound.forward(h).tanh();
    /// }
    /// assert_eq!(h.shape().as_slice(), &[1, 4]);
    /// ```
    ///
    /// # Panics
    /// If the parameters are not in `store`.
    pub fn bind<'a, 't, T: Float>(
        &'a self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
    ) -> BoundLinear<'a, 't, T> {
        match self.try_bind(tape, store) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Linear::bind`].
    pub fn try_bind<'a, 't, T: Float>(
        &'a self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
    ) -> Result<BoundLinear<'a, 't, T>, Error> {
        let _scope = tape.scope(&self.name);
        let weight = tape.try_param(store, self.weight)?;
        let bias = self.bias.map(|b| tape.try_param(store, b)).transpose()?;
        Ok(BoundLinear {
            layer: self,
            tape,
            weight,
            bias,
        })
    }

    fn check_input<T: Float>(&self, x: Var<'_, T>) -> Result<(), Error> {
        x.validate("linear")?;
        let shape = x.shape();
        if shape.len() < 2 {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}; it needs at least 2 axes, [batch, in] (a single sample is [1, in])",
                    ShapeDisplay(&shape)
                ),
            });
        }
        if shape[shape.len() - 1] != self.in_features {
            return Err(Error::Features {
                layer: self.name.clone(),
                expected: self.in_features,
                shape: shape.to_vec(),
            });
        }
        Ok(())
    }
}

/// A [`Linear`] layer bound on one tape: its weight and bias are bound once, and
/// [`BoundLinear::forward`] can be applied any number of times. The product is
/// `x.matmul_t(W)`, which reads the `[out, in]` weight transposed through strides
/// instead of recording a transposed copy.
#[derive(Clone, Copy)]
pub struct BoundLinear<'a, 't, T: Float> {
    layer: &'a Linear,
    tape: &'t Tape<T>,
    weight: Var<'t, T>,
    bias: Option<Var<'t, T>>,
}

impl<'t, T: Float> BoundLinear<'_, 't, T> {
    /// The layer.
    pub fn layer(&self) -> &Linear {
        self.layer
    }

    /// `W` on the tape, `[out, in]`.
    pub fn weight(&self) -> Var<'t, T> {
        self.weight
    }

    /// The bias on the tape, `[out]`.
    pub fn bias(&self) -> Option<Var<'t, T>> {
        self.bias
    }

    /// `x @ Wᵀ + b`, as [`Linear::forward`], the output named `"<name>.z"` (every
    /// application: a lookup by name finds the first).
    ///
    /// # Panics
    /// With the message of [`BoundLinear::try_forward`]'s error.
    pub fn forward(&self, x: Var<'t, T>) -> Var<'t, T> {
        match self.try_forward(x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`BoundLinear::forward`].
    pub fn try_forward(&self, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        self.layer.check_input(x)?;
        let _scope = self.tape.scope(&self.layer.name);
        let y = x.try_matmul_t(self.weight)?;
        let z = match self.bias {
            Some(b) => y.try_add(b)?,
            None => y,
        };
        Ok(z.named(&self.layer.z_name))
    }
}

/// An element-wise activation, for [`Mlp`] (or anywhere a choice of activation is
/// data).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// `x` for `x > 0`, `slope·x` otherwise.
    LeakyRelu(f64),
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// GELU.
    Gelu,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl Activation {
    /// Records the activation of `x`.
    ///
    /// ```
    /// use descent_nn::Activation;
    /// let tape = descent_tape::Tape::<f64>::new();
    /// assert_eq!(Activation::Relu.apply(tape.var(-2.0)).item(), 0.0);
    /// assert_eq!(Activation::Identity.apply(tape.var(-2.0)).item(), -2.0);
    /// ```
    pub fn apply<'t, T: Float>(self, x: Var<'t, T>) -> Var<'t, T> {
        match self.try_apply(x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Activation::apply`] (a stale or foreign handle).
    pub fn try_apply<'t, T: Float>(self, x: Var<'t, T>) -> Result<Var<'t, T>, Error> {
        Ok(match self {
            Activation::Identity => {
                x.validate("identity")?;
                x
            }
            Activation::Relu => x.try_relu()?,
            Activation::LeakyRelu(slope) => x.try_leaky_relu(slope)?,
            Activation::Tanh => x.try_tanh()?,
            Activation::Sigmoid => x.try_sigmoid()?,
            Activation::Gelu => x.try_gelu()?,
            Activation::Softplus => x.try_softplus()?,
        })
    }
}

/// A multi-layer perceptron: `Linear` layers of the given sizes with an activation
/// after every layer but the last (the output is linear: apply a loss or an output
/// activation yourself).
///
/// Layer `i` is named `"<name>.<i>"`, so its parameters are `"<name>.<i>.weight"` and
/// `"<name>.<i>.bias"` (as `nn.Sequential` names them in PyTorch), and each layer's
/// ops, its activation included, are recorded in the scope `"<name>.<i>"`.
///
/// Each layer names both its outputs, so either error vector is a lookup by name:
///
/// | node | value | `grads.named(&tape, ..)` gives |
/// |---|---|---|
/// | `"<name>.<i>.z"` | `z = h @ Wᵀ + b`, before the activation | `∂L/∂z`, the δ of the backpropagation literature |
/// | `"<name>.<i>.a"` | `a = activation(z)`, the layer's output | `∂L/∂a` |
///
/// The last layer has no activation: its output is its `z`. With
/// [`Activation::Identity`] `a` is `z`, one node, named `z`. By scope,
/// `grads.scope_deltas(&tape)` gives each scope's last node, so `∂L/∂a` for the
/// hidden layers and `∂L/∂z` for the last.
///
/// ```
/// use descent_backprop::{Backward, ParamGrads};
/// use descent_nn::{Activation, Mlp, init};
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// // Learn y = x₀ - x₁ with a 2-8-1 tanh MLP.
/// let mut store = ParamStore::<f64>::new();
/// let mlp = Mlp::new(&mut store, "mlp", &[2, 8, 1], Activation::Tanh, &mut init::rng(3));
/// assert_eq!(store.find("mlp.1.bias"), mlp.layers()[1].bias());
/// let xs = Tensor::from([[0.1, 0.2], [0.5, -0.3], [-0.4, 0.1], [0.3, 0.3]]);
/// let ys = Tensor::from([[-0.1], [0.8], [-0.5], [0.0]]);
/// let tape = Tape::new();
/// let mut losses = vec![];
/// for _ in 0..300 {
///     tape.reset();
///     let pred = mlp.forward(&tape, &store, tape.constant(xs.clone()));
///     let loss = pred.mse(tape.constant(ys.clone()));
///     losses.push(loss.item());
///     let grads = ParamGrads::from(&loss.backward());
///     for (id, g) in grads.iter() {
///         let p = store.get_mut(id).unwrap();
///         p.data_mut().iter_mut().zip(g.data()).for_each(|(p, g)| *p -= 0.2 * g);
///     }
/// }
/// assert!(losses[299] < 0.05 * losses[0], "{} -> {}", losses[0], losses[299]);
///
/// // δ before and after the hidden layer's tanh: ∂L/∂z = ∂L/∂a · (1 - a²).
/// tape.reset();
/// let pred = mlp.forward(&tape, &store, tape.constant(xs.clone()));
/// let grads = pred.mse(tape.constant(ys.clone())).backward();
/// let dz = grads.named(&tape, "mlp.0.z").to_tensor();
/// let da = grads.named(&tape, "mlp.0.a").to_tensor();
/// let read = tape.read();
/// let a = read.names().find(|(_, n)| *n == "mlp.0.a").map(|(id, _)| read.value(id)).unwrap();
/// for ((dz, da), a) in dz.data().iter().zip(da.data()).zip(a.to_tensor().data()) {
///     assert!((dz - da * (1.0 - a * a)).abs() < 1e-12);
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    name: String,
    layers: Vec<Linear>,
    /// `"<layer>.a"` for each layer but the last, made once rather than every forward.
    a_names: Vec<String>,
    activation: Activation,
}

impl Mlp {
    /// An MLP with layer sizes `sizes` (`[in, hidden..., out]`) and PyTorch's default
    /// initialisation of each layer (see [`Linear::new`]), drawn layer by layer.
    ///
    /// # Panics
    /// If `sizes` has fewer than 2 entries.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        sizes: &[usize],
        activation: Activation,
        rng: &mut impl Rng,
    ) -> Self {
        let name = name.into();
        if sizes.len() < 2 {
            panic!("{}", Self::too_few(&name, sizes));
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(store, format!("{name}.{i}"), w[0], w[1], rng))
            .collect();
        Self::from_layers(name, layers, activation)
    }

    /// An MLP whose weights are drawn from `weight` and biases from `bias` (`None`: no
    /// biases), layer by layer, weight before bias.
    ///
    /// ```
    /// use descent_nn::{Activation, Mlp, init::{self, Init, Nonlinearity}};
    /// use descent_tape::ParamStore;
    /// let mut store = ParamStore::<f32>::new();
    /// let he = Init::KaimingUniform { gain: Nonlinearity::Relu.gain() };
    /// let mlp = Mlp::with_init(&mut store, "net", &[784, 128, 10], Activation::Relu, he,
    ///     Some(Init::Zeros), &mut init::rng(0)).unwrap();
    /// assert_eq!(store.num_elements(), 784 * 128 + 128 + 128 * 10 + 10);
    /// let err = Mlp::with_init(&mut store, "bad", &[3], Activation::Relu, he, None, &mut init::rng(0));
    /// assert_eq!(err.unwrap_err().to_string(), "bad: an MLP needs at least 2 sizes (inputs and outputs), got [3]");
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for fewer than 2 sizes, [`Error::Init`] when an initialiser
    /// refuses a shape; the store is left unchanged in both cases.
    pub fn with_init<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        sizes: &[usize],
        activation: Activation,
        weight: Init,
        bias: Option<Init>,
        rng: &mut impl Rng,
    ) -> Result<Self, Error> {
        let name = name.into();
        if sizes.len() < 2 {
            return Err(Self::too_few(&name, sizes));
        }
        // Draw everything first, so a refused initialiser leaves the store unchanged.
        let mut values = Vec::with_capacity(sizes.len() - 1);
        for w in sizes.windows(2) {
            let wt = weight.try_tensor::<T>(&[w[1], w[0]], rng)?;
            let b = bias.map(|b| b.try_tensor::<T>(&[w[1]], rng)).transpose()?;
            values.push((wt, b));
        }
        let layers = values
            .into_iter()
            .enumerate()
            .map(|(i, (w, b))| {
                Linear::from_tensors(store, format!("{name}.{i}"), w, b).expect("shapes made here")
            })
            .collect();
        Ok(Self::from_layers(name, layers, activation))
    }

    fn from_layers(name: String, layers: Vec<Linear>, activation: Activation) -> Self {
        let hidden = layers.len() - 1;
        let a_names = layers[..hidden]
            .iter()
            .map(|l| format!("{}.a", l.name()))
            .collect();
        Self {
            name,
            layers,
            a_names,
            activation,
        }
    }

    fn too_few(name: &str, sizes: &[usize]) -> Error {
        Error::Config {
            layer: name.to_owned(),
            reason: format!("an MLP needs at least 2 sizes (inputs and outputs), got {sizes:?}"),
        }
    }

    /// The MLP's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// The activation between layers.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The output for `x` of shape `[..., in]`: `[..., out]`. Each layer's `z` and `a`
    /// are named as the [type's docs](Mlp) say.
    ///
    /// # Panics
    /// With the message of [`Mlp::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        match self.try_forward(tape, store, x) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Mlp::forward`].
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.try_forward(tape, store, h)?;
            if i < last {
                let _scope = tape.scope(layer.name());
                h = self.activation.try_apply(h)?;
                // Identity gives `z` back; naming it `a` would lose the name `z`.
                if !matches!(self.activation, Activation::Identity) {
                    h = h.named(&self.a_names[i]);
                }
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init;
    use descent_backprop::Backward;

    #[test]
    fn forward_is_x_w_transposed_plus_b() {
        let mut store = ParamStore::<f64>::new();
        let w = Tensor::from([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]);
        let fc =
            Linear::from_tensors(&mut store, "fc", w, Some(Tensor::from([0.5, -0.5]))).unwrap();
        let tape = Tape::new();
        let x = tape.constant(Tensor::from([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]]));
        let y = fc.forward(&tape, &store, x);
        assert_eq!(y.value().data(), &[6.5, -1.0, -0.5, -2.5]);
        // Batched input [2, 2, 3] -> [2, 2, 2].
        let xb = tape.constant(Tensor::<f64>::ones(&[2, 2, 3]));
        assert_eq!(fc.forward(&tape, &store, xb).shape().as_slice(), &[2, 2, 2]);
    }

    /// The backward pass through `Mlp::forward` against central differences on the
    /// store's values: checks the wiring (transpose, bias broadcast, activation
    /// placement, which parameter each gradient is keyed by).
    #[test]
    fn gradients_match_finite_differences() {
        let mut store = ParamStore::<f64>::new();
        let mlp = Mlp::new(
            &mut store,
            "mlp",
            &[3, 5, 2],
            Activation::Tanh,
            &mut init::rng(8),
        );
        let x = Tensor::from([[0.3, -0.2, 0.9], [0.1, 0.4, -0.7]]);
        let tape = Tape::new();
        let loss_of = |store: &ParamStore<f64>| {
            tape.reset();
            let y = mlp.forward(&tape, store, tape.constant(x.clone()));
            (y * y).sum().item()
        };
        tape.reset();
        let y = mlp.forward(&tape, &store, tape.constant(x.clone()));
        let grads = descent_backprop::ParamGrads::from(&(y * y).sum().backward());
        assert_eq!(grads.len(), 4);
        let ids: Vec<ParamId> = store.ids().collect();
        let eps = 1e-6;
        for id in ids {
            let analytic = grads.get(id).unwrap().clone();
            for i in 0..analytic.len() {
                let orig = store.get(id).unwrap().data()[i];
                store.get_mut(id).unwrap().data_mut()[i] = orig + eps;
                let up = loss_of(&store);
                store.get_mut(id).unwrap().data_mut()[i] = orig - eps;
                let down = loss_of(&store);
                store.get_mut(id).unwrap().data_mut()[i] = orig;
                let numeric = (up - down) / (2.0 * eps);
                let a = analytic.data()[i];
                assert!(
                    (a - numeric).abs() < 1e-7 * (1.0 + a.abs()),
                    "{}[{i}]: analytic {a}, numeric {numeric}",
                    store.name(id).unwrap()
                );
            }
        }
    }

    #[test]
    fn scopes_and_names() {
        let mut store = ParamStore::<f32>::new();
        let mlp = Mlp::new(
            &mut store,
            "net",
            &[2, 3, 1],
            Activation::Relu,
            &mut init::rng(0),
        );
        let names: Vec<&str> = store.iter().map(|(_, n, _)| n).collect();
        assert_eq!(
            names,
            ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"]
        );
        let tape = Tape::new();
        let y = mlp.forward(&tape, &store, tape.constant(Tensor::<f32>::ones(&[4, 2])));
        let read = tape.read();
        assert_eq!(read.scope_of(y.id()), "net.1");
        let scopes: std::collections::BTreeSet<&str> = (0..tape.len())
            .map(|i| read.scope_of(descent_tape::NodeId::from_index(i)))
            .collect();
        assert!(
            scopes.contains("net.0") && scopes.contains("net.1"),
            "{scopes:?}"
        );
    }

    /// Every layer's `z` and every hidden layer's `a` are named, in the layer's scope;
    /// `a` is the node after the activation, `z` the one before.
    #[test]
    fn z_and_a_are_named_in_their_layer() {
        let mut store = ParamStore::<f64>::new();
        let mlp = Mlp::new(
            &mut store,
            "net",
            &[2, 3, 3, 1],
            Activation::Tanh,
            &mut init::rng(0),
        );
        let tape = Tape::new();
        let y = mlp.forward(&tape, &store, tape.constant(Tensor::<f64>::ones(&[4, 2])));
        let read = tape.read();
        let named: Vec<(&str, &str, &str)> = read
            .names()
            .filter(|(_, n)| n.ends_with(".z") || n.ends_with(".a"))
            .map(|(id, n)| (n, read.scope_of(id), read.nodes()[id.index()].op().name()))
            .collect();
        assert_eq!(
            named,
            [
                ("net.0.z", "net.0", "add"),
                ("net.0.a", "net.0", "tanh"),
                ("net.1.z", "net.1", "add"),
                ("net.1.a", "net.1", "tanh"),
                ("net.2.z", "net.2", "add"),
            ]
        );
        assert_eq!(read.name(y.id()), Some("net.2.z"));

        // With no activation, `a` is `z`: one node, which keeps the name `z`.
        let lin = Mlp::new(
            &mut store,
            "lin",
            &[2, 3, 1],
            Activation::Identity,
            &mut init::rng(0),
        );
        drop(read);
        tape.reset();
        let _ = lin.forward(&tape, &store, tape.constant(Tensor::<f64>::ones(&[4, 2])));
        let read = tape.read();
        let names: Vec<&str> = read
            .names()
            .map(|(_, n)| n)
            .filter(|n| !n.ends_with("weight") && !n.ends_with("bias"))
            .collect();
        assert_eq!(names, ["lin.0.z", "lin.1.z"]);
    }

    #[test]
    fn default_init_is_torch_bound() {
        let mut store = ParamStore::<f64>::new();
        let fc = Linear::new(&mut store, "fc", 16, 50, &mut init::rng(0));
        for id in [fc.weight(), fc.bias().unwrap()] {
            assert!(
                store
                    .get(id)
                    .unwrap()
                    .data()
                    .iter()
                    .all(|x| x.abs() <= 0.25)
            );
        }
        let zero_in = Linear::new(&mut store, "z", 0, 3, &mut init::rng(0));
        assert_eq!(
            store.get(zero_in.bias().unwrap()).unwrap().data(),
            &[0.0; 3]
        );
    }

    #[test]
    fn errors() {
        let mut store = ParamStore::<f64>::new();
        let r = &mut init::rng(0);
        let e = Linear::with_init(
            &mut store,
            "fc",
            2,
            3,
            Init::Zeros,
            Some(Init::XavierNormal { gain: 1.0 }),
            r,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "xavier_normal: needs a weight of at least 2 axes ([out, in]) to compute fan_in and fan_out, got shape [3]"
        );
        assert!(store.is_empty());
        let e = Linear::from_tensors(&mut store, "fc", Tensor::from([1.0, 2.0]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fc: the weight should be 2-d [out, in], got shape [2]"
        );
        let fc = Linear::new(&mut store, "fc", 2, 1, r);
        let other = ParamStore::<f64>::new();
        let tape = Tape::new();
        let x = tape.constant(Tensor::<f64>::ones(&[1, 2]));
        let e = fc.try_forward(&tape, &other, x).unwrap_err().to_string();
        assert!(e.contains("param"), "{e}");
        let x1 = tape.constant(Tensor::from([1.0, 2.0]));
        let e = fc.try_forward(&tape, &store, x1).unwrap_err().to_string();
        assert_eq!(
            e,
            "fc: the input has shape [2]; it needs at least 2 axes, [batch, in] (a single sample is [1, in])"
        );
        let x3 = tape.constant(Tensor::<f64>::ones(&[4, 3]));
        let e = fc.try_forward(&tape, &store, x3).unwrap_err().to_string();
        assert_eq!(
            e,
            "fc: the input has shape [4, 3], whose last axis should be the layer's 2 input features"
        );
        tape.reset();
        let e = fc.try_forward(&tape, &store, x).unwrap_err().to_string();
        assert!(e.contains("before the tape was reset"), "{e}");
    }

    #[test]
    #[should_panic(expected = "m: an MLP needs at least 2 sizes")]
    fn mlp_new_panics_on_one_size() {
        let mut store = ParamStore::<f64>::new();
        let _ = Mlp::new(&mut store, "m", &[4], Activation::Relu, &mut init::rng(0));
    }
}
