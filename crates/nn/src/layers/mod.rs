//! The layer set, one file per idea. Every layer is a [`Module`](crate::Module),
//! named and checked against its PyTorch namesake (`crates/nn/tests/torch_layers.rs`).
//!
//! | descent | PyTorch |
//! |---|---|
//! | [`Linear`](crate::Linear) | `nn.Linear` |
//! | [`Identity`], [`Flatten`] | `nn.Identity`, `nn.Flatten` |
//! | [`ReLU`], [`LeakyReLU`], [`Tanh`], [`Sigmoid`], [`GELU`], [`SiLU`], [`Softplus`], [`Softmax`], [`LogSoftmax`] | the same names (`GELU` is `approximate="tanh"`) |
//! | [`Dropout`] | `nn.Dropout` (its own seeded stream) |
//! | [`LayerNorm`] | `nn.LayerNorm` |
//! | [`BatchNorm1d`], [`BatchNorm2d`] | `nn.BatchNorm1d`, `nn.BatchNorm2d` |
//! | [`Embedding`] | `nn.Embedding` |
//! | [`Conv1d`](crate::Conv1d), [`Conv2d`](crate::Conv2d), [`MaxPool2d`](crate::MaxPool2d), [`AvgPool2d`](crate::AvgPool2d), [`GlobalAvgPool2d`](crate::GlobalAvgPool2d) | `nn.Conv1d`, `nn.Conv2d`, `nn.MaxPool2d`, `nn.AvgPool2d`, `nn.AdaptiveAvgPool2d(1)` + `nn.Flatten()` |

mod activation;
mod batch_norm;
mod conv;
mod dropout;
mod embedding;
mod flatten;
mod layer_norm;
mod linear;

pub use activation::{
    GELU, Identity, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh,
};
pub use batch_norm::{BatchNorm1d, BatchNorm2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use flatten::Flatten;
pub use layer_norm::LayerNorm;
