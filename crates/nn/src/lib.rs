//! # descent-nn
//!
//! Layers and initialisers built on the descent tape and its parameter store.
//!
//! - [`init`]: the initialisers of `torch.nn.init` (uniform, normal, Xavier/Glorot,
//!   Kaiming/He, constants) as one enum, [`Init`], drawn from a seeded ChaCha8
//!   generator ([`init::rng`]) so the same seed gives the same numbers on every machine.
//! - [`Linear`]: `y = x @ Wᵀ + b` with PyTorch's `[out, in]` weight, its parameters
//!   registered in a [`ParamStore`](descent_tape::ParamStore) as `"<name>.weight"` and
//!   `"<name>.bias"`, its ops recorded in the tape scope `<name>`.
//! - [`Mlp`]: a stack of `Linear` layers with an [`Activation`] between them.
//! - [`Module`] and [`ModuleInfo`]: what every layer and container is (named entries as
//!   PyTorch's `state_dict` names them, a forward recorded through a [`Ctx`] in
//!   training or evaluation mode, freezing, counts, [`Module::summary`]);
//!   [`Sequential`], the container; [`layers`], the layer set (activations, `Flatten`,
//!   `Dropout`, `LayerNorm`, `BatchNorm1d/2d`, `Embedding`), each checked against
//!   `torch.nn`. `docs/guide/modules.md` is the guide.
//! - [`checkpoint`]: parameters and optimiser state saved to and loaded from
//!   safetensors files (which PyTorch opens), written atomically, loaded strictly;
//!   a PyTorch `state_dict` loaded into a module by name
//!   ([`checkpoint::load_state_dict`]).
//!
//! A layer holds only the ids of its parameters; the values live in the store, which
//! the optimisers of `descent-optim` update. Each training step binds the parameters on
//! a fresh (or reset) tape.
//!
//! ```
//! use descent_backprop::{Backward, ParamGrads};
//! use descent_nn::{Activation, Init, Linear, Mlp, init};
//! use descent_tape::{ParamStore, Tape};
//! use descent_tensor::Tensor;
//!
//! let mut rng = init::rng(2024);
//! let mut store = ParamStore::<f32>::new();
//! let he = Init::KaimingUniform { gain: init::Nonlinearity::Relu.gain() };
//! let body = Mlp::with_init(&mut store, "body", &[4, 16, 16], Activation::Relu, he,
//!     Some(Init::Zeros), &mut rng).unwrap();
//! let head = Linear::new(&mut store, "head", 16, 3, &mut rng);
//! assert_eq!(store.len(), 6);
//!
//! let tape = Tape::new();
//! let x = tape.constant(Tensor::<f32>::ones(&[8, 4]));
//! let logits = head.forward(&tape, &store, body.forward(&tape, &store, x).relu());
//! let loss = logits.cross_entropy(&[0, 1, 2, 0, 1, 2, 0, 1]);
//! let grads = ParamGrads::from(&loss.backward());
//! assert_eq!(grads.len(), 6);
//! assert_eq!(grads.get(head.weight()).unwrap().shape(), &[3, 16]);
//! ```
#![warn(missing_docs)]

pub mod attention;
pub mod checkpoint;
pub mod conv;
mod error;
pub mod init;
pub mod layers;
mod linear;
pub mod module;
pub mod recurrent;
mod sequential;
pub mod transformer;

pub use checkpoint::CheckpointError;
pub use conv::{AvgPool2d, Conv1d, Conv2d, GlobalAvgPool2d, MaxPool2d};
pub use error::Error;
pub use init::{Init, InitError, Nonlinearity};
pub use linear::{Activation, BoundLinear, Linear, Mlp};
pub use module::{Ctx, EntryKind, Module, ModuleInfo, Summary, SummaryRow};
pub use recurrent::{Recurrent, RecurrentConfig, RecurrentOutput};
pub use sequential::Sequential;
pub use transformer::TransformerEncoderLayer;
