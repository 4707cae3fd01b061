use descent::prelude::*;
#[test]
fn sizes() {
    eprintln!(
        "node f64 {}",
        std::mem::size_of::<descent::tape::Node<f64>>()
    );
    eprintln!(
        "node f32 {}",
        std::mem::size_of::<descent::tape::Node<f32>>()
    );
    eprintln!("op {}", std::mem::size_of::<Op>());
    eprintln!("var {}", std::mem::size_of::<Var<f64>>());
}
#[test]
fn mlp() {
    let tape = Tape::<f64>::new();
    let x = tape.constant(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
    let w = tape.var(Tensor::from([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]));
    let b = tape.var(Tensor::from([0.01, -0.02]));
    let h = (x.matmul(w) + b).tanh();
    let loss = h.cross_entropy(&[0, 1]);
    let grads = loss.backward();
    eprintln!(
        "{}",
        descent::backprop::render(&tape, Some(&grads), &Default::default())
    );
    let r = gradcheck(
        &[
            Tensor::from([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]),
            Tensor::from([0.01, -0.02]),
        ],
        |t, v| {
            let x = t.constant(Tensor::from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]));
            (x.matmul(v[0]) + v[1]).tanh().cross_entropy(&[0, 1])
        },
        GradCheckOptions::default(),
    )
    .unwrap();
    eprintln!("{r}");
    assert!(r.passed());
}
