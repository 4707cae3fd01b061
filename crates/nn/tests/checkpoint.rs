//! Checkpoints: round trips, strict loading, atomic saves under injected failures,
//! damaged files (truncated at every length, every header byte flipped, wrong shapes
//! and dtypes, empty and missing files), and resuming training bit for bit.

use descent_backprop::{Backward, ParamGrads};
use descent_nn::checkpoint::{self, write_atomically};
use descent_nn::{Activation, CheckpointError, Mlp, init};
use descent_optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Exponential, NAdam, Optimizer, RmsProp, Scheduled, Sgd,
};
use descent_tape::{ParamStore, Tape};
use descent_tensor::{Float, Tensor};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("descent-checkpoint-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A store of awkward parameters: dotted names, a 0-d one, an empty one, size-1 axes.
fn sample<T: Float>() -> ParamStore<T> {
    let mut store = ParamStore::<T>::new();
    let t = |shape: &[usize], k: f64| {
        Tensor::from_fn(shape, |i| T::from_f64((i as f64 + 1.0) * k - 0.3))
    };
    store.insert("layer.2.weight", t(&[3, 2], 0.25));
    store.insert("layer.2.bias", t(&[3], -1.5));
    store.insert("scale", t(&[], 3.0));
    store.insert("empty", t(&[0, 4], 1.0));
    store.insert("a", t(&[1, 4, 1], 1e-3));
    store
}

fn snapshot<T: Float>(store: &ParamStore<T>) -> Vec<(String, Vec<usize>, Vec<T>)> {
    store
        .iter()
        .map(|(_, n, v)| (n.to_owned(), v.shape().to_vec(), v.data().to_vec()))
        .collect()
}

#[test]
fn parameters_round_trip_bit_for_bit_in_store_order() {
    fn check<T: Float>(dir: &Path) {
        let store = sample::<T>();
        let path = dir.join(format!("{}.safetensors", T::NAME));
        checkpoint::save(&store, &path).unwrap();
        let back = checkpoint::load::<T>(&path).unwrap();
        assert_eq!(snapshot(&back), snapshot(&store));
        // Bits, not just values (NaN-free here, so == is bitwise for finite numbers,
        // but -0.0 == 0.0: compare the bits too).
        for ((_, _, a), (_, _, b)) in back.iter().zip(store.iter()) {
            let bits = |t: &Tensor<T>| {
                t.data()
                    .iter()
                    .map(|v| v.as_f64().to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(b));
        }
        // The same bytes through memory.
        let bytes = checkpoint::to_bytes(&store).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        assert_eq!(
            snapshot(&checkpoint::from_bytes::<T>(&bytes).unwrap()),
            snapshot(&store)
        );
    }
    let dir = scratch("round_trip");
    check::<f32>(&dir);
    check::<f64>(&dir);
    assert_eq!(entries(&dir), ["f32.safetensors", "f64.safetensors"]);
}

#[test]
fn load_into_fills_a_model_built_the_same_way() {
    let dir = scratch("load_into");
    let path = dir.join("mlp.safetensors");
    let mut store = ParamStore::<f32>::new();
    let mlp = Mlp::new(
        &mut store,
        "body",
        &[3, 5, 2],
        Activation::Tanh,
        &mut init::rng(1),
    );
    checkpoint::save(&store, &path).unwrap();

    let mut fresh = ParamStore::<f32>::new();
    let twin = Mlp::new(
        &mut fresh,
        "body",
        &[3, 5, 2],
        Activation::Tanh,
        &mut init::rng(2),
    );
    assert_ne!(snapshot(&fresh), snapshot(&store));
    checkpoint::load_into(&mut fresh, &path).unwrap();
    assert_eq!(snapshot(&fresh), snapshot(&store));

    let tape = Tape::new();
    let x = Tensor::from_fn(&[4, 3], |i| i as f32 * 0.1 - 0.5);
    let a = mlp.forward(&tape, &store, tape.constant(&x)).value();
    let b = twin.forward(&tape, &fresh, tape.constant(&x)).value();
    assert_eq!(a, b);
}

fn err_text(r: Result<(), CheckpointError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn load_into_is_strict_and_changes_nothing_when_it_fails() {
    let dir = scratch("strict");
    let path = dir.join("ckpt.safetensors");
    let store = sample::<f32>();
    checkpoint::save(&store, &path).unwrap();

    // A parameter the file lacks, and a tensor the store lacks.
    let mut other = sample::<f32>();
    let extra = other.insert("head.weight", Tensor::<f32>::zeros(&[2, 2]));
    let before = snapshot(&other);
    let err = checkpoint::load_into(&mut other, &path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Names { missing, unexpected, .. }
        if missing == &["head.weight"] && unexpected.is_empty()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("ckpt.safetensors"), "{text}");
    assert!(
        text.contains("missing 'head.weight' (in the store, not in the file)"),
        "{text}"
    );
    assert_eq!(snapshot(&other), before);
    other.remove(extra);
    let scale = other.find("scale").unwrap();
    other.remove(scale);
    let text = err_text(checkpoint::load_into(&mut other, &path));
    assert!(
        text.contains("unexpected 'scale' (in the file, not in the store)"),
        "{text}"
    );

    // A shape mismatch names the tensor and both shapes, and writes nothing, even to
    // the parameters checked before it.
    let mut wrong = ParamStore::<f32>::new();
    for (_, name, v) in store.iter() {
        let shape: Vec<usize> = if name == "a" {
            vec![4]
        } else {
            v.shape().to_vec()
        };
        wrong.insert(name, Tensor::full(&shape, 7.0));
    }
    let before = snapshot(&wrong);
    let err = checkpoint::load_into(&mut wrong, &path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Shape { tensor, expected, found, .. }
        if tensor == "a" && expected == &[4] && found == &[1, 4, 1]),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("tensor 'a' has shape [1, 4, 1] in the file, but the store's is [4]"),
        "{err}"
    );
    assert_eq!(snapshot(&wrong), before);

    // No dtype conversion: an f32 file into an f64 store is refused, naming both.
    let mut wide = sample::<f64>();
    let err = checkpoint::load_into(&mut wide, &path).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Dtype { expected, found, .. }
        if expected == "F64" && found == "F32"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is F32 in the file, but F64 is needed"),
        "{err}"
    );
    assert!(matches!(
        checkpoint::load::<f64>(&path),
        Err(CheckpointError::Dtype { .. })
    ));

    // A store cannot hold two parameters of one name (refused at insert), so a
    // checkpoint never meets one.
    let mut twice = ParamStore::<f32>::new();
    twice.insert("w", Tensor::from([1.0]));
    let err = twice.try_insert("w", Tensor::from([2.0])).unwrap_err();
    assert!(
        err.to_string()
            .contains("already holds a parameter named 'w'"),
        "{err}"
    );
    assert_eq!(twice.len(), 1);
}

/// A writer that accepts `budget` bytes, then fails as a full disk would.
struct FailAfter<'a> {
    inner: &'a mut dyn Write,
    budget: usize,
}

impl Write for FailAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::other("no space left on device (simulated)"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file() {
    let dir = scratch("atomic");
    let path = dir.join("model.safetensors");
    let good = sample::<f32>();
    checkpoint::save(&good, &path).unwrap();
    let good_bytes = std::fs::read(&path).unwrap();

    // The new checkpoint's bytes go through a writer that fails halfway (and at the
    // first byte, and one byte short of the end).
    let mut changed = sample::<f32>();
    changed
        .get_mut(changed.find("scale").unwrap())
        .unwrap()
        .data_mut()[0] = 42.0;
    let new_bytes = checkpoint::to_bytes(&changed).unwrap();
    for budget in [0, new_bytes.len() / 2, new_bytes.len() - 1] {
        let err = write_atomically(&path, |w| {
            FailAfter { inner: w, budget }.write_all(&new_bytes)
        })
        .unwrap_err();
        assert!(err.to_string().contains("no space left on device"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), good_bytes, "budget {budget}");
        assert_eq!(entries(&dir), ["model.safetensors"], "budget {budget}");
        assert_eq!(
            snapshot(&checkpoint::load::<f32>(&path).unwrap()),
            snapshot(&good)
        );
    }

    // A panic while writing also leaves no temporary file.
    let caught = std::panic::catch_unwind(|| {
        let _ = write_atomically(&path, |w| {
            w.write_all(&new_bytes[..10])?;
            panic!("writer panicked");
        });
    });
    assert!(caught.is_err());
    assert_eq!(entries(&dir), ["model.safetensors"]);
    assert_eq!(std::fs::read(&path).unwrap(), good_bytes);

    // The rename fails (the target is a non-empty directory): the temporary file goes.
    let blocked = dir.join("blocked.safetensors");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let text = err_text(checkpoint::save(&changed, &blocked));
    assert!(text.contains("cannot rename"), "{text}");
    assert_eq!(entries(&dir), ["blocked.safetensors", "model.safetensors"]);

    // The temporary file cannot be created (the directory does not exist, or is a
    // file): nothing is created.
    let text = err_text(checkpoint::save(
        &changed,
        dir.join("no/such/dir/m.safetensors"),
    ));
    assert!(text.contains("cannot create"), "{text}");
    let text = err_text(checkpoint::save(&changed, path.join("m.safetensors")));
    assert!(text.contains("cannot create"), "{text}");
    assert_eq!(entries(&dir), ["blocked.safetensors", "model.safetensors"]);

    // And a save that succeeds replaces the file whole.
    checkpoint::save(&changed, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), new_bytes);
    assert_eq!(entries(&dir), ["blocked.safetensors", "model.safetensors"]);
}

/// Loads `bytes` every way there is; none may panic. Returns the `load_into` result.
fn try_all(bytes: &[u8]) -> Result<(), CheckpointError> {
    let _ = checkpoint::from_bytes::<f32>(bytes);
    let _ = checkpoint::from_bytes::<f64>(bytes);
    let mut store = sample::<f32>();
    let r = checkpoint::load_into_from_bytes(&mut store, bytes);
    if r.is_err() {
        assert_eq!(
            snapshot(&store),
            snapshot(&sample::<f32>()),
            "a failed load wrote"
        );
    }
    r
}

#[test]
fn a_truncated_file_is_an_error_at_every_length() {
    let bytes = checkpoint::to_bytes(&sample::<f32>()).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut seen = std::collections::BTreeSet::new();
    for len in 0..bytes.len() {
        let err = try_all(&bytes[..len]).expect_err(&format!("{len} bytes loaded"));
        let text = err.to_string();
        assert!(
            matches!(err, CheckpointError::Format { .. }),
            "{len}: {text}"
        );
        let expected = if len < 8 {
            "too short for the 8-byte header length"
        } else if len < 8 + header {
            "but only"
        } else {
            "(the file is truncated)"
        };
        assert!(text.contains(expected), "{len} bytes: {text}");
        if len >= 8 + header {
            // Past the header, the message names the first tensor cut short.
            assert!(text.contains("tensor '"), "{len} bytes: {text}");
        }
        seen.insert(
            text.split(": not a valid safetensors file: ")
                .nth(1)
                .unwrap()
                .split(" (")
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    // Some of what was said, for the record:
    // - "the file is 5 bytes, too short for the 8-byte header length ..."
    // - "the header should be 392 bytes, but only 100 follow its length ..."
    // - "tensor 'layer.2.bias' (F32 [3]) needs data bytes 0..12, but the file has only 7 ..."
    assert!(seen.len() > 3, "{seen:#?}");
    // One byte too many is also refused.
    let mut long = bytes.clone();
    long.push(0);
    let text = try_all(&long).unwrap_err().to_string();
    assert!(text.contains("bytes were appended"), "{text}");
}

#[test]
fn every_flipped_header_byte_is_caught_or_harmless() {
    let bytes = checkpoint::to_bytes(&sample::<f32>()).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (mut caught, mut harmless) = (0, 0);
    for at in 0..8 + header {
        // An ASCII-preserving flip (low bit) keeps the header readable text, the hard
        // case; a high-bit flip makes it invalid UTF-8 or a huge length.
        for mask in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            match try_all(&bad) {
                Err(e) => {
                    caught += 1;
                    let text = e.to_string();
                    assert!(!text.is_empty());
                }
                Ok(()) => {
                    // Loaded: then it must have loaded the right values (a flip in
                    // metadata that nothing reads, like "format": "pu").
                    harmless += 1;
                    let mut store = sample::<f32>();
                    for (_, _, v) in store.iter() {
                        assert!(v.all_finite());
                    }
                    checkpoint::load_into_from_bytes(&mut store, &bad).unwrap();
                    assert_eq!(snapshot(&store), snapshot(&sample::<f32>()), "flip at {at}");
                    let loaded = checkpoint::from_bytes::<f32>(&bad).unwrap();
                    let mut a = snapshot(&loaded);
                    let mut b = snapshot(&sample::<f32>());
                    a.sort_by(|x, y| x.0.cmp(&y.0));
                    b.sort_by(|x, y| x.0.cmp(&y.0));
                    assert_eq!(a, b, "flip at {at} loaded other names or values");
                }
            }
        }
    }
    assert!(
        caught > 10 * harmless,
        "caught {caught}, harmless {harmless}"
    );
}

#[test]
fn random_damage_is_caught_or_harmless_and_never_panics() {
    // Thousands of random edits: bytes overwritten anywhere, bytes inserted or removed.
    let good = checkpoint::to_bytes(&sample::<f32>()).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut caught = 0;
    for _ in 0..3000 {
        let mut bad = good.clone();
        match next(4) {
            0 => {
                let at = next(bad.len());
                bad.insert(at, next(256) as u8);
            }
            1 => {
                bad.remove(next(bad.len()));
            }
            _ => {
                for _ in 0..1 + next(4) {
                    let at = next(bad.len());
                    bad[at] = next(256) as u8;
                }
            }
        }
        match try_all(&bad) {
            Err(_) => caught += 1,
            Ok(()) => {
                // Loaded: then with the right names and values.
                let mut a = snapshot(&checkpoint::from_bytes::<f32>(&bad).unwrap());
                let mut b = snapshot(&sample::<f32>());
                a.sort_by(|x, y| x.0.cmp(&y.0));
                b.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(a, b);
            }
        }
    }
    assert!(caught > 2500, "caught {caught} of 3000");
}

#[test]
fn a_flipped_data_byte_fails_the_checksum() {
    let bytes = checkpoint::to_bytes(&sample::<f64>()).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for at in 8 + header..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let err = checkpoint::from_bytes::<f64>(&bad).unwrap_err();
        assert!(matches!(err, CheckpointError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("the file is corrupted"), "{err}");
    }
}

#[test]
fn empty_missing_and_foreign_files_are_clear_errors() {
    let dir = scratch("bad_files");
    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let text = checkpoint::load::<f32>(&empty).unwrap_err().to_string();
    assert!(text.contains("empty.safetensors"), "{text}");
    assert!(text.contains("the file is 0 bytes"), "{text}");

    let missing = dir.join("missing.safetensors");
    let err = checkpoint::load::<f32>(&missing).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert!(err.to_string().contains("missing.safetensors"), "{err}");

    let text_file = dir.join("notes.safetensors");
    std::fs::write(&text_file, b"these are not tensors at all, just some words").unwrap();
    let text = checkpoint::load::<f32>(&text_file).unwrap_err().to_string();
    assert!(
        text.contains("more than the format's 100 MB limit"),
        "{text}"
    );

    // A header whose shape does not match its data offsets names the tensor.
    let header = br#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 16]);
    let text = checkpoint::from_bytes::<f32>(&bytes)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "tensor 'w' is F32 of shape [2, 3], 24 bytes, but its data offsets 0..16 span 16"
        ),
        "{text}"
    );

    // A dtype the format does not know is named with its tensor.
    let header = br#"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    let text = checkpoint::from_bytes::<f32>(&bytes)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("tensor 'w' has dtype 'F33', which is not a safetensors dtype"),
        "{text}"
    );

    // A dtype this crate does not hold (BF16) is refused by name.
    let header = br#"{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    let text = checkpoint::from_bytes::<f32>(&bytes)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("tensor 'w' is BF16 in the file, but F32 is needed"),
        "{text}"
    );

    // Optimiser state is not parameters, and the other way round.
    let store = sample::<f32>();
    let state = checkpoint::optimizer_to_bytes(&store, &Sgd::<f32>::new(0.1)).unwrap();
    let text = checkpoint::from_bytes::<f32>(&state)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("holds optimiser state (saved by save_optimizer), not parameters"),
        "{text}"
    );
    let params = checkpoint::to_bytes(&store).unwrap();
    let text = err_text(checkpoint::load_optimizer_from_bytes(
        &store,
        &mut Sgd::new(0.1),
        &params,
    ));
    assert!(text.contains("holds no optimiser state"), "{text}");
}

// ---------------------------------------------------------------------------------
// Optimiser state and resuming.

/// A small regression problem: an MLP fit to a fixed target, `steps` steps of `opt`.
struct Problem {
    x: Tensor<f32>,
    y: Tensor<f32>,
}

impl Problem {
    fn new() -> Self {
        Self {
            x: Tensor::from_fn(&[8, 3], |i| ((i * 7 % 11) as f32) * 0.2 - 1.0),
            y: Tensor::from_fn(&[8, 2], |i| ((i * 5 % 7) as f32) * 0.3 - 0.9),
        }
    }

    fn model(&self, seed: u64) -> (ParamStore<f32>, Mlp) {
        let mut store = ParamStore::<f32>::new();
        let mlp = Mlp::new(
            &mut store,
            "mlp",
            &[3, 6, 2],
            Activation::Tanh,
            &mut init::rng(seed),
        );
        (store, mlp)
    }

    fn train(
        &self,
        store: &mut ParamStore<f32>,
        mlp: &Mlp,
        opt: &mut dyn Optimizer<f32>,
        steps: usize,
    ) {
        let tape = Tape::new();
        for _ in 0..steps {
            tape.reset();
            let out = mlp.forward(&tape, store, tape.constant(&self.x));
            let loss = out.mse(tape.constant(&self.y));
            let grads = ParamGrads::from(&loss.backward());
            opt.step(store, &grads).unwrap();
        }
    }
}

fn bits(store: &ParamStore<f32>) -> Vec<u32> {
    store
        .iter()
        .flat_map(|(_, _, v)| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        .collect()
}

type Factory = fn() -> Box<dyn Optimizer<f32>>;

fn optimizers() -> Vec<(&'static str, Factory)> {
    vec![
        ("sgd momentum", || Box::new(Sgd::new(0.05).momentum(0.9))),
        ("sgd nesterov", || {
            Box::new(
                Sgd::new(0.05)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(1e-3),
            )
        }),
        ("adam", || Box::new(Adam::new(1e-2))),
        ("adam amsgrad", || {
            Box::new(Adam::new(1e-2).amsgrad(true).weight_decay(1e-2))
        }),
        ("adamw", || Box::new(AdamW::new(1e-2))),
        ("adagrad", || Box::new(Adagrad::new(1e-1))),
        ("rmsprop centred momentum", || {
            Box::new(RmsProp::new(1e-2).centered(true).momentum(0.5))
        }),
        ("adadelta", || Box::new(Adadelta::new(1.0))),
        ("adamax", || Box::new(Adamax::new(1e-2))),
        ("nadam", || Box::new(NAdam::new(1e-2))),
        ("scheduled adam", || {
            // The rate decays every step: resuming needs the schedule's step count too.
            Box::new(Scheduled::new(Adam::new(1e-2), Exponential::new(0.8)))
        }),
    ]
}

#[test]
fn five_steps_saved_and_five_more_after_loading_equal_ten_straight() {
    let dir = scratch("resume");
    let problem = Problem::new();
    for (what, make) in optimizers() {
        // Ten steps straight.
        let (mut straight, mlp) = problem.model(3);
        let mut opt = make();
        problem.train(&mut straight, &mlp, opt.as_mut(), 10);

        // Five, save, load into a fresh store and optimiser, five more.
        let (mut first, mlp1) = problem.model(3);
        let mut opt1 = make();
        problem.train(&mut first, &mlp1, opt1.as_mut(), 5);
        let (params, state) = (
            dir.join("params.safetensors"),
            dir.join("optim.safetensors"),
        );
        checkpoint::save(&first, &params).unwrap();
        checkpoint::save_optimizer(&first, opt1.as_ref(), &state).unwrap();
        drop((first, opt1));

        let (mut resumed, mlp2) = problem.model(99); // other initial values
        let mut opt2 = make();
        checkpoint::load_into(&mut resumed, &params).unwrap();
        checkpoint::load_optimizer(&resumed, opt2.as_mut(), &state).unwrap();
        problem.train(&mut resumed, &mlp2, opt2.as_mut(), 5);

        assert_eq!(
            bits(&resumed),
            bits(&straight),
            "{what}: resumed training diverged"
        );
        // The loaded state is the saved one, so saving it again gives the same file.
        let (mut again, _) = problem.model(3);
        let mut opt3 = make();
        checkpoint::load_into(&mut again, &params).unwrap();
        checkpoint::load_optimizer(&again, opt3.as_mut(), &state).unwrap();
        assert_eq!(
            checkpoint::optimizer_to_bytes(&again, opt3.as_ref()).unwrap(),
            std::fs::read(&state).unwrap(),
            "{what}"
        );
    }
}

#[test]
fn without_the_optimiser_state_resuming_diverges() {
    // The control for the test above: Adam restarted from fresh state differs.
    let problem = Problem::new();
    let (mut straight, mlp) = problem.model(3);
    problem.train(&mut straight, &mlp, &mut Adam::new(1e-2), 10);
    let (mut restarted, mlp) = problem.model(3);
    problem.train(&mut restarted, &mlp, &mut Adam::new(1e-2), 5);
    problem.train(&mut restarted, &mlp, &mut Adam::new(1e-2), 5);
    assert_ne!(bits(&restarted), bits(&straight));
}

#[test]
fn optimiser_state_files_are_named_by_parameter_and_slot() {
    let problem = Problem::new();
    let (mut store, mlp) = problem.model(3);
    let mut adam = Adam::new(1e-2).amsgrad(true);
    problem.train(&mut store, &mlp, &mut adam, 2);
    let bytes = checkpoint::optimizer_to_bytes(&store, &adam).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names.len(), 4 * 4);
    for name in ["mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias"] {
        for slot in ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] {
            let t = st.tensor(&format!("{name}.{slot}")).unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            assert_eq!(
                t.shape(),
                store.get(store.find(name).unwrap()).unwrap().shape()
            );
        }
        let step = st.tensor(&format!("{name}.step")).unwrap();
        assert_eq!(step.dtype(), safetensors::Dtype::F64);
        assert_eq!(step.shape(), &[] as &[usize]);
        assert_eq!(f64::from_le_bytes(step.data().try_into().unwrap()), 2.0);
    }
}

#[test]
fn optimiser_state_is_loaded_strictly() {
    let problem = Problem::new();
    let (mut store, mlp) = problem.model(3);
    let mut adam = Adam::new(1e-2);
    problem.train(&mut store, &mlp, &mut adam, 2);
    let bytes = checkpoint::optimizer_to_bytes(&store, &adam).unwrap();

    // Another kind of optimiser.
    let text = err_text(checkpoint::load_optimizer_from_bytes(
        &store,
        &mut Sgd::new(0.1),
        &bytes,
    ));
    assert!(text.contains("the state of 'adam', not of sgd"), "{text}");
    let text = err_text(checkpoint::load_optimizer_from_bytes(
        &store,
        &mut AdamW::new(0.1),
        &bytes,
    ));
    assert!(text.contains("not of adamw"), "{text}");

    // AMSGrad needs a slot plain Adam did not keep; the optimiser says which.
    let mut ams = Adam::new(1e-2).amsgrad(true);
    let err = checkpoint::load_optimizer_from_bytes(&store, &mut ams, &bytes).unwrap_err();
    assert!(matches!(err, CheckpointError::Optimizer { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("parameter 'mlp.0.weight': the state has no 'max_exp_avg_sq' buffer"),
        "{text}"
    );

    // A store of another shape: the tensor and both shapes are named.
    let mut other = ParamStore::<f32>::new();
    Mlp::new(
        &mut other,
        "mlp",
        &[3, 7, 2],
        Activation::Tanh,
        &mut init::rng(3),
    );
    let err =
        checkpoint::load_optimizer_from_bytes(&other, &mut Adam::new(1e-2), &bytes).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Shape { tensor, expected, found, .. }
        if tensor.starts_with("mlp.0.") && expected != found),
        "{err:?}"
    );

    // A store without one of the parameters: the tensors are unexpected.
    let mut fewer = ParamStore::<f32>::new();
    Mlp::new(
        &mut fewer,
        "other",
        &[3, 6, 2],
        Activation::Tanh,
        &mut init::rng(3),
    );
    let text = err_text(checkpoint::load_optimizer_from_bytes(
        &fewer,
        &mut Adam::new(1e-2),
        &bytes,
    ));
    assert!(text.contains("unexpected 'mlp."), "{text}");
    assert!(text.contains("'mlp.0.bias.exp_avg'"), "{text}");

    // Truncated state files are errors, never panics, and leave the optimiser as it was.
    let mut fresh = Adam::new(1e-2);
    for len in (0..bytes.len()).step_by(7) {
        assert!(checkpoint::load_optimizer_from_bytes(&store, &mut fresh, &bytes[..len]).is_err());
    }
    assert!(fresh.state(&store).is_empty());
}
