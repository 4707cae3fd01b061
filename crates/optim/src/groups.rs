//! Parameter groups: per-group hyper-parameters, as PyTorch's `param_groups`.

use crate::{Error, Optimizer, OptimizerState};
use descent_tape::{ParamId, ParamKey, ParamStore};
use descent_tensor::Float;
use slotmap::SecondaryMap;
use std::borrow::Cow;

/// An optimiser whose parameters fall into groups, each with its own hyper-parameters
/// (learning rate, weight decay, betas, momentum, `maximize`, …): PyTorch's
/// `param_groups`. Each group is an optimiser of the same type `O`, holding the state
/// of its own parameters; group 0, the default, takes every parameter placed in no
/// other group.
///
/// A group is made from the default's settings, changed by a closure
/// ([`ParamGroups::group`]), as PyTorch fills a group's missing keys from the
/// optimiser's defaults. So "a smaller rate for the pretrained body, no weight decay on
/// biases and norms" reads:
///
/// ```
/// use descent_tape::{ParamGrads, ParamStore};
/// use descent_optim::{AdamW, Optimizer, ParamGroups};
/// use descent_tensor::Tensor;
/// let mut store = ParamStore::<f64>::new();
/// let body_w = store.insert("body.weight", Tensor::from([1.0, 1.0]));
/// let body_b = store.insert("body.bias", Tensor::from([1.0]));
/// let head_w = store.insert("head.weight", Tensor::from([1.0, 1.0]));
/// let mut opt = ParamGroups::new(AdamW::new(1e-2).weight_decay(0.1)) // group 0: the head
///     .group([body_w], |o| o.with_lr(1e-3))                         // group 1
///     .group([body_b], |o| o.with_lr(1e-3).weight_decay(0.0));      // group 2
/// assert_eq!(opt.group_count(), 3);
/// assert_eq!(opt.group_of(head_w), 0);
/// assert_eq!(opt.group_learning_rate(2), 1e-3);
///
/// let grads: ParamGrads<f64> = [
///     (body_w, Tensor::from([1.0, 1.0])),
///     (body_b, Tensor::from([1.0])),
///     (head_w, Tensor::from([1.0, 1.0])),
/// ]
/// .into_iter()
/// .collect();
/// opt.step(&mut store, &grads).unwrap();
/// // Adam's first step moves each parameter by its group's rate (after decay).
/// let moved = |id, from: f64| from - store.get(id).unwrap().data()[0];
/// assert!((moved(head_w, 1.0) - (1e-2 + 1e-2 * 0.1)).abs() < 1e-9);
/// assert!((moved(body_w, 1.0) - (1e-3 + 1e-3 * 0.1)).abs() < 1e-9);
/// assert!((moved(body_b, 1.0) - 1e-3).abs() < 1e-9);
/// ```
///
/// A step checks every gradient once, then hands each parameter to its group: one
/// O(1) lookup per parameter, no copy, and no allocation once every group's state
/// exists. An optimiser used without groups (`Adam::new(…)` alone) pays nothing for
/// them. Schedules drive each group's rate ([`Scheduled`](crate::Scheduled) scales
/// each group's own base rate, as PyTorch's schedulers scale each group's
/// `initial_lr`).
///
/// A parameter placed in two groups is refused at the first step
/// ([`Error::Config`]), as `torch.optim` refuses it. Groups are meant to be made
/// before the first step: a group is a copy of the default as it is then, and a
/// parameter already stepped in the default group keeps its state there.
#[derive(Clone, Debug)]
pub struct ParamGroups<O> {
    groups: Vec<O>,
    member: SecondaryMap<ParamKey, usize>,
    /// The first parameter found in two groups: (the parameter, its first group, the
    /// second).
    duplicate: Option<(ParamId, usize, usize)>,
}

impl<O> ParamGroups<O> {
    /// One group, the default, holding every parameter.
    ///
    /// ```
    /// use descent_optim::{Optimizer, ParamGroups, Sgd};
    /// let opt = ParamGroups::new(Sgd::<f32>::new(0.1));
    /// assert_eq!(opt.group_count(), 1);
    /// ```
    pub fn new(default: O) -> Self {
        Self {
            groups: vec![default],
            member: SecondaryMap::new(),
            duplicate: None,
        }
    }

    /// Adds a group of `params` whose optimiser is `configure` applied to a copy of the
    /// default group's (PyTorch's `{"params": …, "lr": …}` entry).
    ///
    /// ```
    /// use descent_optim::{Optimizer, ParamGroups, Sgd};
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let b = store.insert("b", Tensor::from([0.0]));
    /// let opt = ParamGroups::new(Sgd::<f64>::new(0.1).momentum(0.9).weight_decay(1e-4))
    ///     .group([b], |o| o.weight_decay(0.0));
    /// assert_eq!(opt.group_of(b), 1);
    /// ```
    pub fn group(
        mut self,
        params: impl IntoIterator<Item = ParamId>,
        configure: impl FnOnce(O) -> O,
    ) -> Self
    where
        O: Clone,
    {
        let opt = configure(self.groups[0].clone());
        self.push_group(params, opt);
        self
    }

    /// Adds a group of `params` stepped by `opt` (PyTorch's `add_param_group`), and
    /// returns its index.
    ///
    /// ```
    /// use descent_optim::{Adam, ParamGroups};
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f32>::new();
    /// let w = store.insert("w", Tensor::from([0.0]));
    /// let mut opt = ParamGroups::new(Adam::<f32>::new(1e-3));
    /// assert_eq!(opt.push_group([w], Adam::new(1e-4).betas(0.5, 0.9)), 1);
    /// ```
    pub fn push_group(&mut self, params: impl IntoIterator<Item = ParamId>, opt: O) -> usize {
        let index = self.groups.len();
        self.groups.push(opt);
        for id in params {
            match self.member.get(id.key()) {
                Some(&first) => {
                    self.duplicate.get_or_insert((id, first, index));
                }
                None => {
                    self.member.insert(id.key(), index);
                }
            }
        }
        index
    }

    /// The group that steps parameter `id`: 0 (the default) unless it was placed in
    /// another.
    ///
    /// ```
    /// use descent_optim::{ParamGroups, Sgd};
    /// use descent_tape::ParamStore;
    /// use descent_tensor::Tensor;
    /// let mut store = ParamStore::<f64>::new();
    /// let (a, b) = (store.insert("a", Tensor::from([0.0])), store.insert("b", Tensor::from([0.0])));
    /// let opt = ParamGroups::new(Sgd::<f64>::new(0.1)).group([b], |o| o);
    /// assert_eq!((opt.group_of(a), opt.group_of(b)), (0, 1));
    /// ```
    pub fn group_of(&self, id: ParamId) -> usize {
        self.member.get(id.key()).copied().unwrap_or(0)
    }

    /// The groups' optimisers, the default first.
    pub fn groups(&self) -> &[O] {
        &self.groups
    }

    /// The groups' optimisers, mutably: change a group's hyper-parameters between
    /// steps.
    ///
    /// ```
    /// use descent_optim::{Optimizer, ParamGroups, Sgd};
    /// let mut opt = ParamGroups::new(Sgd::<f64>::new(0.1));
    /// opt.groups_mut()[0] = Sgd::new(0.1).weight_decay(0.0).momentum(0.9);
    /// assert_eq!(opt.groups().len(), 1);
    /// ```
    pub fn groups_mut(&mut self) -> &mut [O] {
        &mut self.groups
    }
}

/// The prefix of group `g`'s counters in an exported state: none for the default, so
/// that one group exports as its optimiser alone does.
fn counter_prefix(g: usize) -> String {
    if g == 0 {
        String::new()
    } else {
        format!("group{g}.")
    }
}

impl<T: Float, O: Optimizer<T> + Clone> Optimizer<T> for ParamGroups<O> {
    fn name(&self) -> &'static str {
        self.groups[0].name()
    }

    /// The default group's rate.
    fn learning_rate(&self) -> f64 {
        self.groups[0].learning_rate()
    }

    /// Sets the default group's rate; [`Optimizer::set_group_learning_rate`] sets any
    /// group's.
    fn set_learning_rate(&mut self, lr: f64) {
        self.groups[0].set_learning_rate(lr);
    }

    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn group_learning_rate(&self, group: usize) -> f64 {
        self.groups[group].learning_rate()
    }

    fn set_group_learning_rate(&mut self, group: usize, lr: f64) {
        self.groups[group].set_learning_rate(lr);
    }

    fn group_momentum(&self, group: usize) -> Option<f64> {
        self.groups[group].group_momentum(0)
    }

    fn set_group_momentum(&mut self, group: usize, momentum: f64) {
        self.groups[group].set_group_momentum(0, momentum);
    }

    fn validate(&self) -> Result<(), Error> {
        if let Some((id, first, second)) = self.duplicate {
            return Err(Error::Config {
                op: self.name(),
                reason: format!(
                    "parameter {id:?} is in groups {first} and {second}; a parameter \
                     belongs to one group"
                ),
            });
        }
        self.groups.iter().try_for_each(O::validate)
    }

    fn begin_step(&mut self) {
        self.groups.iter_mut().for_each(O::begin_step);
    }

    fn update(&mut self, id: ParamId, value: &mut [T], grad: &[T]) {
        let g = self.member.get(id.key()).copied().unwrap_or(0);
        self.groups[g].update(id, value, grad);
    }

    /// Every group's state (each holds its own parameters'), group by group; the
    /// counters of group `g > 0` are prefixed `group{g}.`.
    fn state(&self, params: &ParamStore<T>) -> OptimizerState<T> {
        let mut out = OptimizerState::default();
        for (g, opt) in self.groups.iter().enumerate() {
            let s = opt.state(params);
            out.buffers.extend(s.buffers);
            out.scalars.extend(s.scalars);
            let prefix = counter_prefix(g);
            out.counters.extend(
                s.counters
                    .into_iter()
                    .map(|(n, v)| (Cow::Owned(format!("{prefix}{n}")), v)),
            );
        }
        out
    }

    /// Splits `state` by group and loads each part into its group; nothing changes
    /// unless every group accepts its part.
    fn load_state(
        &mut self,
        params: &ParamStore<T>,
        state: OptimizerState<T>,
    ) -> Result<(), Error> {
        let mut parts: Vec<OptimizerState<T>> = vec![OptimizerState::default(); self.groups.len()];
        for (id, slot, t) in state.buffers {
            parts[self.group_of(id)].buffers.push((id, slot, t));
        }
        for (id, slot, v) in state.scalars {
            parts[self.group_of(id)].scalars.push((id, slot, v));
        }
        for (name, v) in state.counters {
            let g = (1..self.groups.len())
                .find(|&g| name.starts_with(&counter_prefix(g)))
                .unwrap_or(0);
            let own = name[counter_prefix(g).len()..].to_owned();
            parts[g].counters.push((Cow::Owned(own), v));
        }
        let mut loaded = self.groups.clone();
        for (opt, part) in loaded.iter_mut().zip(parts) {
            opt.load_state(params, part)?;
        }
        self.groups = loaded;
        Ok(())
    }
}
