//! Convolution and pooling layers: `Conv1d`, `Conv2d` (parameters `<name>.weight`
//! `[out, in / groups, k...]` and `<name>.bias` `[out]`, PyTorch's names, layouts and
//! default initialisation), and the parameterless `MaxPool2d`, `AvgPool2d` and
//! `GlobalAvgPool2d`. Each records the ops of `descent_tape` (`conv1d`, `conv2d`,
//! `max_pool2d`, `avg_pool2d`, `global_avg_pool2d`); the layers add parameters, names
//! and scopes.

use crate::Error;
use crate::init::Init;
use descent_tape::{
    Conv1dOptions, Conv2dOptions, IntoPair, ParamId, ParamStore, Pool2dOptions, Tape, Var,
};
use descent_tensor::{Float, ShapeDisplay, Tensor};
use rand::Rng;

/// PyTorch's default initialisers of a convolution with this weight shape: the weight
/// `kaiming_uniform_(a=√5)`, U(-1/√fan_in, 1/√fan_in), and the bias U(-1/√fan_in,
/// 1/√fan_in), with `fan_in = in / groups · Π kernel` (zeros for an empty fan).
fn torch_default(weight_shape: &[usize]) -> Init {
    let fan_in: usize = weight_shape[1..].iter().product();
    let bound = if fan_in > 0 {
        1.0 / (fan_in as f64).sqrt()
    } else {
        0.0
    };
    Init::Uniform {
        low: -bound,
        high: bound,
    }
}

/// What both convolution layers hold: names, channel counts and parameter ids.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Core {
    name: String,
    z_name: String,
    in_channels: usize,
    out_channels: usize,
    weight: ParamId,
    bias: Option<ParamId>,
}

impl Core {
    /// Checks the weight's shape against `groups` and the bias, then registers both.
    fn register<T: Float>(
        store: &mut ParamStore<T>,
        name: String,
        rank: usize,
        groups: usize,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
    ) -> Result<Self, Error> {
        let ws = weight.shape();
        if ws.len() != rank {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "the weight should have {rank} axes [out, in / groups, kernel...], got shape {}",
                    ShapeDisplay(ws)
                ),
            });
        }
        if groups == 0 || !ws[0].is_multiple_of(groups) || ws[2..].contains(&0) {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "groups = {groups} must be at least 1 and divide the {} output channels, and the kernel {} must not be empty",
                    ws[0],
                    ShapeDisplay(&ws[2..])
                ),
            });
        }
        let (out_channels, in_channels) = (ws[0], ws[1] * groups);
        if let Some(found) = bias
            .as_ref()
            .map(|b| b.shape())
            .filter(|s| *s != [out_channels])
        {
            return Err(Error::ParamShape {
                layer: name,
                what: "the bias",
                expected: vec![out_channels],
                found: found.to_vec(),
            });
        }
        let weight = store.insert(format!("{name}.weight"), weight);
        let bias = bias.map(|b| store.insert(format!("{name}.bias"), b));
        Ok(Core {
            z_name: format!("{name}.z"),
            name,
            in_channels,
            out_channels,
            weight,
            bias,
        })
    }

    fn check_input<T: Float>(&self, x: Var<'_, T>, rank: usize) -> Result<(), Error> {
        x.validate(if rank == 3 { "conv1d" } else { "conv2d" })?;
        let shape = x.shape();
        if shape.len() != rank || shape[1] != self.in_channels {
            return Err(Error::Config {
                layer: self.name.clone(),
                reason: format!(
                    "the input has shape {}; it should be {} with the layer's {} input channels",
                    ShapeDisplay(&shape),
                    if rank == 3 {
                        "[n, c, l]"
                    } else {
                        "[n, c, h, w]"
                    },
                    self.in_channels
                ),
            });
        }
        Ok(())
    }

    /// Binds the parameters inside the layer's scope and records `conv`.
    fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        conv: impl FnOnce(Var<'t, T>, Option<Var<'t, T>>) -> descent_tape::Result<Var<'t, T>>,
    ) -> Result<Var<'t, T>, Error> {
        let _scope = tape.scope(&self.name);
        let weight = tape.try_param(store, self.weight)?;
        let bias = self.bias.map(|b| tape.try_param(store, b)).transpose()?;
        Ok(conv(weight, bias)?.named(&self.z_name))
    }
}

/// A two-axis convolution layer, as PyTorch's `nn.Conv2d`: `y = conv2d(x, W, b)` for
/// `x [n, in, h, w]`, with `W` `[out, in / groups, kh, kw]` under `"<name>.weight"` and
/// `b` `[out]` under `"<name>.bias"`. The output, named `"<name>.z"`, is recorded in
/// the scope `name`.
///
/// ```
/// use descent_backprop::Backward;
/// use descent_nn::{Conv2d, init};
/// use descent_tape::{Conv2dOptions, ParamStore, Tape};
/// use descent_tensor::Tensor;
///
/// let mut store = ParamStore::<f32>::new();
/// let conv = Conv2d::new(&mut store, "conv1", 1, 8, 3, Conv2dOptions::new().padding(1), &mut init::rng(0));
/// assert_eq!(store.get(conv.weight()).unwrap().shape(), &[8, 1, 3, 3]);
/// assert_eq!(store.name(conv.bias().unwrap()), Some("conv1.bias"));
///
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::<f32>::ones(&[2, 1, 8, 8]));
/// let y = conv.forward(&tape, &store, x);
/// assert_eq!(y.shape().as_slice(), &[2, 8, 8, 8]);
/// let grads = y.sum().backward();
/// assert_eq!(grads.param(conv.weight()).unwrap().shape(), &[8, 1, 3, 3]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2d {
    core: Core,
    options: Conv2dOptions,
}

impl Conv2d {
    /// A layer with PyTorch's default initialisation (weight and bias both U(-1/√fan_in,
    /// 1/√fan_in), `fan_in = in / groups · kh · kw`, drawn weight first) and a bias.
    ///
    /// # Panics
    /// With the message of [`Conv2d::with_init`]'s error (groups not dividing the
    /// channels, an empty kernel).
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_channels: usize,
        out_channels: usize,
        kernel: impl IntoPair,
        options: Conv2dOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let [kh, kw] = kernel.into_pair();
        let shape = [out_channels, in_channels / options.groups.max(1), kh, kw];
        let init = torch_default(&shape);
        let layer = Self::with_init(
            store,
            name,
            in_channels,
            out_channels,
            [kh, kw],
            options,
            init,
            Some(init),
            rng,
        );
        layer.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A layer whose weight is drawn from `weight` and bias from `bias` (`None`: no
    /// bias), weight first.
    ///
    /// # Errors
    /// [`Error::Config`] when `groups` does not divide both channel counts or the kernel
    /// is empty; [`Error::Init`] when an initialiser refuses the shape. The store is
    /// left unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn with_init<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_channels: usize,
        out_channels: usize,
        kernel: impl IntoPair,
        options: Conv2dOptions,
        weight: Init,
        bias: Option<Init>,
        rng: &mut impl Rng,
    ) -> Result<Self, Error> {
        let name = name.into();
        let groups = options.groups;
        if groups == 0 || !in_channels.is_multiple_of(groups) {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "groups = {groups} must be at least 1 and divide the {in_channels} input channels"
                ),
            });
        }
        let [kh, kw] = kernel.into_pair();
        let w = weight.try_tensor::<T>(&[out_channels, in_channels / groups, kh, kw], rng)?;
        let b = bias
            .map(|b| b.try_tensor::<T>(&[out_channels], rng))
            .transpose()?;
        Self::from_tensors(store, name, w, b, options)
    }

    /// A layer with the given values: `weight` `[out, in / groups, kh, kw]`, `bias`
    /// `[out]` (or none); for loading parameters computed elsewhere.
    ///
    /// ```
    /// use descent_nn::Conv2d;
    /// use descent_tape::{Conv2dOptions, ParamStore};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let w = Tensor::<f64>::zeros(&[4, 1, 3, 3]);
    /// let conv = Conv2d::from_tensors(&mut store, "dw", w, None, Conv2dOptions::new().groups(4)).unwrap();
    /// assert_eq!((conv.in_channels(), conv.out_channels()), (4, 4));
    /// let err = Conv2d::from_tensors(&mut store, "bad", Tensor::<f64>::zeros(&[3, 1, 3, 3]), None, Conv2dOptions::new().groups(2));
    /// assert!(err.unwrap_err().to_string().starts_with("bad: groups = 2 must be at least 1 and divide the 3 output channels"));
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a weight that is not 4-d or does not divide into `groups`,
    /// [`Error::ParamShape`] for a bias that is not `[out]`; the store is left unchanged.
    pub fn from_tensors<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
        options: Conv2dOptions,
    ) -> Result<Self, Error> {
        let core = Core::register(store, name.into(), 4, options.groups, weight, bias)?;
        Ok(Conv2d { core, options })
    }

    /// The layer's name: the prefix of its parameters' names and its scope on a tape.
    pub fn name(&self) -> &str {
        &self.core.name
    }
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.core.in_channels
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.core.out_channels
    }
    /// Stride, padding, dilation and groups.
    pub fn options(&self) -> Conv2dOptions {
        self.options
    }
    /// The weight's id, `[out, in / groups, kh, kw]`.
    pub fn weight(&self) -> ParamId {
        self.core.weight
    }
    /// The bias's id, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<ParamId> {
        self.core.bias
    }

    /// The convolution of `x [n, in, h, w]`, recorded in the layer's scope, the output
    /// named `"<name>.z"`.
    ///
    /// # Panics
    /// With the message of [`Conv2d::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.try_forward(tape, store, x)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The fallible form of [`Conv2d::forward`]: an error naming the layer when `x` is
    /// not `[n, in, h, w]`, the op's error when the kernel does not fit, and an error
    /// when the parameters are not in `store`.
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        self.core.check_input(x, 4)?;
        self.core
            .forward(tape, store, |w, b| x.try_conv2d(w, b, self.options))
    }
}

/// A one-axis convolution layer, as PyTorch's `nn.Conv1d`: `y = conv1d(x, W, b)` for
/// `x [n, in, l]`, with `W` `[out, in / groups, k]` under `"<name>.weight"` and `b`
/// `[out]` under `"<name>.bias"`; the output is named `"<name>.z"`.
///
/// ```
/// use descent_nn::{Conv1d, init};
/// use descent_tape::{Conv1dOptions, ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let conv = Conv1d::new(&mut store, "c", 2, 3, 5, Conv1dOptions::new().padding(2), &mut init::rng(0));
/// let tape = Tape::new();
/// let y = conv.forward(&tape, &store, tape.constant(Tensor::<f64>::ones(&[4, 2, 10])));
/// assert_eq!(y.shape().as_slice(), &[4, 3, 10]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv1d {
    core: Core,
    options: Conv1dOptions,
}

impl Conv1d {
    /// A layer with PyTorch's default initialisation (see [`Conv2d::new`]; `fan_in = in
    /// / groups · k`) and a bias.
    ///
    /// # Panics
    /// With the message of [`Conv1d::with_init`]'s error.
    pub fn new<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        options: Conv1dOptions,
        rng: &mut impl Rng,
    ) -> Self {
        let init = torch_default(&[out_channels, in_channels / options.groups.max(1), kernel]);
        let layer = Self::with_init(
            store,
            name,
            in_channels,
            out_channels,
            kernel,
            options,
            init,
            Some(init),
            rng,
        );
        layer.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A layer whose weight is drawn from `weight` and bias from `bias` (`None`: no
    /// bias), weight first.
    ///
    /// # Errors
    /// As [`Conv2d::with_init`].
    #[allow(clippy::too_many_arguments)]
    pub fn with_init<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        options: Conv1dOptions,
        weight: Init,
        bias: Option<Init>,
        rng: &mut impl Rng,
    ) -> Result<Self, Error> {
        let name = name.into();
        let groups = options.groups;
        if groups == 0 || !in_channels.is_multiple_of(groups) {
            return Err(Error::Config {
                layer: name,
                reason: format!(
                    "groups = {groups} must be at least 1 and divide the {in_channels} input channels"
                ),
            });
        }
        let w = weight.try_tensor::<T>(&[out_channels, in_channels / groups, kernel], rng)?;
        let b = bias
            .map(|b| b.try_tensor::<T>(&[out_channels], rng))
            .transpose()?;
        Self::from_tensors(store, name, w, b, options)
    }

    /// A layer with the given values: `weight` `[out, in / groups, k]`, `bias` `[out]`
    /// (or none).
    ///
    /// # Errors
    /// As [`Conv2d::from_tensors`], for a 3-d weight.
    pub fn from_tensors<T: Float>(
        store: &mut ParamStore<T>,
        name: impl Into<String>,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
        options: Conv1dOptions,
    ) -> Result<Self, Error> {
        let core = Core::register(store, name.into(), 3, options.groups, weight, bias)?;
        Ok(Conv1d { core, options })
    }

    /// The layer's name: the prefix of its parameters' names and its scope on a tape.
    pub fn name(&self) -> &str {
        &self.core.name
    }
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.core.in_channels
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.core.out_channels
    }
    /// Stride, padding, dilation and groups.
    pub fn options(&self) -> Conv1dOptions {
        self.options
    }
    /// The weight's id, `[out, in / groups, k]`.
    pub fn weight(&self) -> ParamId {
        self.core.weight
    }
    /// The bias's id, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<ParamId> {
        self.core.bias
    }

    /// The convolution of `x [n, in, l]`, recorded in the layer's scope.
    ///
    /// # Panics
    /// With the message of [`Conv1d::try_forward`]'s error.
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.try_forward(tape, store, x)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The fallible form of [`Conv1d::forward`].
    ///
    /// ```
    /// use descent_nn::{Conv1d, init};
    /// use descent_tape::{Conv1dOptions, ParamStore, Tape};
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let conv = Conv1d::new(&mut store, "c", 2, 3, 5, Conv1dOptions::new(), &mut init::rng(0));
    /// let tape = Tape::new();
    /// let err = conv.try_forward(&tape, &store, tape.constant(Tensor::<f64>::ones(&[4, 3, 10])));
    /// assert_eq!(err.unwrap_err().to_string(), "c: the input has shape [4, 3, 10]; it should be [n, c, l] with the layer's 2 input channels");
    /// ```
    pub fn try_forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        self.core.check_input(x, 3)?;
        self.core
            .forward(tape, store, |w, b| x.try_conv1d(w, b, self.options))
    }
}

/// Max pooling over the last two axes, as PyTorch's `nn.MaxPool2d` (no parameters).
/// `forward` takes the tape and store like every layer, and uses neither.
///
/// ```
/// use descent_nn::MaxPool2d;
/// use descent_tape::{ParamStore, Pool2dOptions, Tape};
/// use descent_tensor::Tensor;
/// let pool = MaxPool2d::new(Pool2dOptions::new(2));
/// let (tape, store) = (Tape::<f64>::new(), ParamStore::new());
/// let y = pool.forward(&tape, &store, tape.constant(Tensor::from_fn(&[1, 1, 4, 4], |i| i as f64)));
/// assert_eq!(y.value().data(), &[5.0, 7.0, 13.0, 15.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Kernel, stride, padding, ceil mode.
    pub options: Pool2dOptions,
}

impl MaxPool2d {
    /// The layer.
    pub fn new(options: Pool2dOptions) -> Self {
        MaxPool2d { options }
    }
    /// `max_pool2d(x)`.
    ///
    /// # Panics
    /// With the op's error (see [`Var::try_max_pool2d`]).
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.try_forward(tape, store, x)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    /// The fallible form of [`MaxPool2d::forward`].
    pub fn try_forward<'t, T: Float>(
        &self,
        _tape: &'t Tape<T>,
        _store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        Ok(x.try_max_pool2d(self.options)?)
    }
}

/// Average pooling over the last two axes, as PyTorch's `nn.AvgPool2d` with its
/// defaults (`count_include_pad=True`); no parameters.
///
/// ```
/// use descent_nn::AvgPool2d;
/// use descent_tape::{ParamStore, Pool2dOptions, Tape};
/// use descent_tensor::Tensor;
/// let pool = AvgPool2d::new(Pool2dOptions::new(2));
/// let (tape, store) = (Tape::<f64>::new(), ParamStore::new());
/// let y = pool.forward(&tape, &store, tape.constant(Tensor::from_fn(&[1, 1, 2, 2], |i| i as f64)));
/// assert_eq!(y.value().data(), &[1.5]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Kernel, stride, padding, ceil mode.
    pub options: Pool2dOptions,
}

impl AvgPool2d {
    /// The layer.
    pub fn new(options: Pool2dOptions) -> Self {
        AvgPool2d { options }
    }
    /// `avg_pool2d(x)`.
    ///
    /// # Panics
    /// With the op's error (see [`Var::try_avg_pool2d`]).
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.try_forward(tape, store, x)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    /// The fallible form of [`AvgPool2d::forward`].
    pub fn try_forward<'t, T: Float>(
        &self,
        _tape: &'t Tape<T>,
        _store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        Ok(x.try_avg_pool2d(self.options)?)
    }
}

/// The mean over the last two axes, `[n, c, h, w]` to `[n, c]`: PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` followed by `nn.Flatten()`. No parameters.
///
/// ```
/// use descent_nn::GlobalAvgPool2d;
/// use descent_tape::{ParamStore, Tape};
/// use descent_tensor::Tensor;
/// let (tape, store) = (Tape::<f64>::new(), ParamStore::new());
/// let y = GlobalAvgPool2d.forward(&tape, &store, tape.constant(Tensor::from_fn(&[1, 2, 2, 2], |i| i as f64)));
/// assert_eq!(y.value().data(), &[1.5, 5.5]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPool2d;

impl GlobalAvgPool2d {
    /// `x.global_avg_pool2d()`.
    ///
    /// # Panics
    /// With the op's error (see [`Var::try_global_avg_pool2d`]).
    pub fn forward<'t, T: Float>(
        &self,
        tape: &'t Tape<T>,
        store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Var<'t, T> {
        self.try_forward(tape, store, x)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    /// The fallible form of [`GlobalAvgPool2d::forward`].
    pub fn try_forward<'t, T: Float>(
        &self,
        _tape: &'t Tape<T>,
        _store: &ParamStore<T>,
        x: Var<'t, T>,
    ) -> Result<Var<'t, T>, Error> {
        Ok(x.try_global_avg_pool2d()?)
    }
}
