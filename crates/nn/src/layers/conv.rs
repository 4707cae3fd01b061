//! Convolution and pooling layers as modules: their `forward(tape, store, x)` stays,
//! and they can be placed in containers and named, counted, frozen and summarised.

use crate::Error;
use crate::conv::{AvgPool2d, Conv1d, Conv2d, GlobalAvgPool2d, MaxPool2d};
use crate::module::{Ctx, EntryKind, Module, ModuleInfo};
use descent_tape::{ParamId, Var};
use descent_tensor::Float;

macro_rules! conv_module {
    ($layer:ty, $kind:literal) => {
        impl ModuleInfo for $layer {
            fn name(&self) -> &str {
                <$layer>::name(self)
            }
            fn kind(&self) -> &'static str {
                $kind
            }
            fn entries(&self, out: &mut Vec<(ParamId, EntryKind)>) {
                out.push((self.weight(), EntryKind::Param));
                if let Some(b) = self.bias() {
                    out.push((b, EntryKind::Param));
                }
            }
        }

        impl<T: Float> Module<T> for $layer {
            fn record<'t>(
                &self,
                cx: &mut Ctx<'t, '_, T>,
                x: Var<'t, T>,
            ) -> Result<Var<'t, T>, Error> {
                self.try_forward(cx.tape(), cx.store(), x)
            }
        }
    };
}

conv_module!(Conv2d, "Conv2d");
conv_module!(Conv1d, "Conv1d");

macro_rules! pool_module {
    ($layer:ty, $kind:literal) => {
        impl ModuleInfo for $layer {
            fn name(&self) -> &str {
                &self.name
            }
            fn set_name(&mut self, name: String) {
                self.name = name;
            }
            fn kind(&self) -> &'static str {
                $kind
            }
            fn entries(&self, _out: &mut Vec<(ParamId, EntryKind)>) {}
        }

        impl<T: Float> Module<T> for $layer {
            fn record<'t>(
                &self,
                cx: &mut Ctx<'t, '_, T>,
                x: Var<'t, T>,
            ) -> Result<Var<'t, T>, Error> {
                let _scope = (!self.name.is_empty()).then(|| cx.tape().scope(&self.name));
                self.try_forward(cx.tape(), cx.store(), x)
            }
        }
    };
}

pool_module!(MaxPool2d, "MaxPool2d");
pool_module!(AvgPool2d, "AvgPool2d");
pool_module!(GlobalAvgPool2d, "GlobalAvgPool2d");

#[cfg(test)]
mod tests {
    use crate::layers::{Flatten, ReLU};
    use crate::{Conv2d, Ctx, Linear, MaxPool2d, Module, Sequential, init};
    use descent_tape::{ParamStore, Pool2dOptions, Tape};
    use descent_tensor::Tensor;

    #[test]
    fn a_small_cnn_is_a_sequential_with_torch_names_and_a_summary() {
        let mut store = ParamStore::<f32>::new();
        let rng = &mut init::rng(0);
        let mut net = Sequential::new("cnn");
        net.push(Conv2d::new(
            &mut store,
            net.next_name(),
            1,
            4,
            3,
            Default::default(),
            rng,
        ));
        net.push(ReLU::new());
        net.push(MaxPool2d::new(Pool2dOptions::new(2)));
        net.push(Flatten::new());
        net.push(Linear::new(&mut store, net.next_name(), 4 * 3 * 3, 10, rng));
        let names: Vec<String> = net
            .state_dict_names(&store)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["cnn.0.weight", "cnn.0.bias", "cnn.4.weight", "cnn.4.bias"]
        );
        assert_eq!(net.num_parameters(&store), 4 * 9 + 4 + 36 * 10 + 10);
        let summary = net.summary(&mut store, &[2, 1, 8, 8]).unwrap().to_string();
        assert!(
            summary.contains("MaxPool2d") && summary.contains("[2, 4, 3, 3]"),
            "{summary}"
        );
        let tape = Tape::new();
        let y = net.call(
            &mut Ctx::new(&tape, &mut store),
            tape.constant(Tensor::zeros(&[2, 1, 8, 8])),
        );
        assert_eq!(y.shape().as_slice(), [2, 10]);
    }
}
