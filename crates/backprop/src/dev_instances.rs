//! The reverse walk and the higher-order entry points, compiled here once for `f32`
//! and `f64` in unoptimised builds.
//!
//! Unoptimised builds share generic instances between crates (rustc shares generics
//! at `opt-level = 0`): a program that calls `backward::<f64>` links the instance
//! compiled here instead of compiling its own. Without this, every test binary,
//! example and doctest compiled the walk, and through it every op's rules and
//! kernels, again: about 8,500 of an example's 16,000 generic instances.
//! `docs/PERFORMANCE.md` ("First build") has the measurement. Optimised builds
//! do not share generics, so there this module would only add dead code: it is
//! compiled with debug assertions only, which is the dev and test profiles' mark.

use crate::{
    backward, backward_into, backward_with, grad, grad_graph, hessian, hvp, hvp_with, jacobian,
    jvp, vjp,
};

macro_rules! instances {
    ($($t:ty),*) => {
        /// Addresses of the instances, so that the compiler builds them here.
        #[doc(hidden)]
        pub fn instances() -> Vec<*const ()> {
            vec![$(
                backward::<$t> as *const (),
                backward_with::<$t> as *const (),
                backward_into::<$t> as *const (),
                grad_graph::<$t> as *const (),
                grad::<$t> as *const (),
                vjp::<$t> as *const (),
                jvp::<$t> as *const (),
                hvp::<$t> as *const (),
                hvp_with::<$t> as *const (),
                jacobian::<$t> as *const (),
                hessian::<$t> as *const (),
            )*]
        }
    };
}

instances!(f32, f64);
