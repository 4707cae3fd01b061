//! Loops compiled once per element-wise op: the macros the forward and backward
//! kernels of `elementwise.rs` wrap their loops in. Every op is listed, so a new
//! `UnaryOp` or `BinaryOp` variant does not compile until it is added here too.

// The macros name `UnaryOp` and `BinaryOp` as the calling module sees them.

/// Runs `$body` with `$o` naming `$op` as a constant (a `const` item in each arm, for
/// the ops without a parameter): every loop in `$body` is then compiled once per op,
/// with `apply` and `derivative` reduced to that op's arithmetic, instead of matching
/// on the op per element (which kept the loops scalar). A `const`, not a `let`: a
/// closure passed to a kernel that is not inlined would capture a `let` by reference
/// and match on it at run time after all.
macro_rules! with_fixed_unary {
    ($op:expr, |$o:ident| $body:expr) => {
        match $op {
            UnaryOp::Neg => {
                const $o: UnaryOp = UnaryOp::Neg;
                $body
            }
            UnaryOp::Exp => {
                const $o: UnaryOp = UnaryOp::Exp;
                $body
            }
            UnaryOp::Ln => {
                const $o: UnaryOp = UnaryOp::Ln;
                $body
            }
            UnaryOp::Sqrt => {
                const $o: UnaryOp = UnaryOp::Sqrt;
                $body
            }
            UnaryOp::Abs => {
                const $o: UnaryOp = UnaryOp::Abs;
                $body
            }
            UnaryOp::Sin => {
                const $o: UnaryOp = UnaryOp::Sin;
                $body
            }
            UnaryOp::Cos => {
                const $o: UnaryOp = UnaryOp::Cos;
                $body
            }
            UnaryOp::Tanh => {
                const $o: UnaryOp = UnaryOp::Tanh;
                $body
            }
            UnaryOp::Sinh => {
                const $o: UnaryOp = UnaryOp::Sinh;
                $body
            }
            UnaryOp::Cosh => {
                const $o: UnaryOp = UnaryOp::Cosh;
                $body
            }
            UnaryOp::Sigmoid => {
                const $o: UnaryOp = UnaryOp::Sigmoid;
                $body
            }
            UnaryOp::Relu => {
                const $o: UnaryOp = UnaryOp::Relu;
                $body
            }
            UnaryOp::Gelu => {
                const $o: UnaryOp = UnaryOp::Gelu;
                $body
            }
            UnaryOp::Softplus => {
                const $o: UnaryOp = UnaryOp::Softplus;
                $body
            }
            #[allow(non_snake_case)]
            $o @ (UnaryOp::PowF(_) | UnaryOp::PowI(_) | UnaryOp::LeakyRelu(_)) => $body,
            // Ops with a plain number: each compiled on its own, so that the loop
            // matches on a known variant (its number a loop invariant).
            UnaryOp::AddScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::AddScalar(c);
                $body
            }
            UnaryOp::SubScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::SubScalar(c);
                $body
            }
            UnaryOp::RSubScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::RSubScalar(c);
                $body
            }
            UnaryOp::MulScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::MulScalar(c);
                $body
            }
            UnaryOp::DivScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::DivScalar(c);
                $body
            }
            UnaryOp::RDivScalar(c) => {
                #[allow(non_snake_case)]
                let $o = UnaryOp::RDivScalar(c);
                $body
            }
        }
    };
}

/// [`with_fixed_unary`] for binary ops.
macro_rules! with_fixed_binary {
    ($op:expr, |$o:ident| $body:expr) => {
        match $op {
            BinaryOp::Add => {
                const $o: BinaryOp = BinaryOp::Add;
                $body
            }
            BinaryOp::Sub => {
                const $o: BinaryOp = BinaryOp::Sub;
                $body
            }
            BinaryOp::Mul => {
                const $o: BinaryOp = BinaryOp::Mul;
                $body
            }
            BinaryOp::Div => {
                const $o: BinaryOp = BinaryOp::Div;
                $body
            }
            BinaryOp::Maximum => {
                const $o: BinaryOp = BinaryOp::Maximum;
                $body
            }
            BinaryOp::Minimum => {
                const $o: BinaryOp = BinaryOp::Minimum;
                $body
            }
        }
    };
}

pub(super) use {with_fixed_binary, with_fixed_unary};
