//! `.npy` files written by numpy itself (`fixtures/make_npy.py`) read back here, and
//! files written here in the layout numpy writes.

use descent_data::{Error, encode_npy, read_npy, write_npy};
use descent_tensor::Tensor;

fn fixture(name: &str) -> std::path::PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect()
}

/// `arange(n) * 0.5 - 1`, cast through the fixture's type, as the script writes.
fn expected(n: usize, cast: fn(f64) -> f64) -> Vec<f64> {
    (0..n).map(|i| cast(i as f64 * 0.5 - 1.0)).collect()
}

#[test]
fn floats_in_every_layout_numpy_writes() {
    let same = |x: f64| x;
    for (name, shape) in [
        ("f8_2x3.npy", vec![2, 3]),
        ("f4_4.npy", vec![4]),
        ("f8_big_endian_3x2.npy", vec![3, 2]),
        ("f8_fortran_2x3x4.npy", vec![2, 3, 4]),
        ("f8_v2_2.npy", vec![2]),
    ] {
        let t: Tensor<f64> = read_npy(fixture(name)).unwrap();
        assert_eq!(t.shape(), shape, "{name}");
        assert_eq!(t.data(), expected(shape.iter().product(), same), "{name}");
    }
}

#[test]
fn integers_and_booleans_convert_to_floats() {
    // numpy's astype truncates toward zero: -1, -0.5, 0, 0.5 -> -1, 0, 0, 0.
    let t: Tensor<f32> = read_npy(fixture("i8_2x2.npy")).unwrap();
    assert_eq!(t.data(), [-1.0, 0.0, 0.0, 0.0]);
    let t: Tensor<f64> = read_npy(fixture("i2_5.npy")).unwrap();
    assert_eq!(t.data(), expected(5, f64::trunc));
    let t: Tensor<f64> = read_npy(fixture("u1_3.npy")).unwrap();
    assert_eq!(t.data(), [0.0, 200.0, 255.0]);
    let t: Tensor<f64> = read_npy(fixture("b1_4.npy")).unwrap();
    assert_eq!(t.data(), [1.0, 0.0, 0.0, 1.0]);
    let t: Tensor<f64> = read_npy(fixture("scalar.npy")).unwrap();
    assert_eq!((t.shape(), t.item()), (&[][..], 2.5));
}

#[test]
fn what_is_not_a_number_array_is_refused_by_name() {
    for (name, says) in [
        ("strings.npy", "\"<U2\" is not a number"),
        ("complex.npy", "\"<c16\" is not a number"),
        ("tiny.csv", "not a .npy file"),
    ] {
        let err = read_npy::<f64>(fixture(name)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(says), "{name}: {err}");
    }
    let err = read_npy::<f64>(fixture("missing.npy")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn a_cut_file_is_refused_not_padded() {
    let bytes = std::fs::read(fixture("f8_2x3.npy")).unwrap();
    let dir = tempdir();
    let cut = dir.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let err = read_npy::<f64>(&cut).unwrap_err().to_string();
    assert!(
        err.contains("needs 48 bytes of data, the file holds 45"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn written_files_match_numpys_bytes_and_read_back() {
    // numpy's own file for the same f64 array, byte for byte.
    let numpy = std::fs::read(fixture("f8_2x3.npy")).unwrap();
    let t = Tensor::new(&[2, 3], expected(6, |x| x)).unwrap();
    assert_eq!(encode_npy(&t), numpy);

    let dir = tempdir();
    let path = dir.join("w.npy");
    let t32 = Tensor::new(&[3, 1, 2], (0..6).map(|i| i as f32 / 3.0).collect()).unwrap();
    write_npy(&path, &t32).unwrap();
    let back: Tensor<f32> = read_npy(&path).unwrap();
    assert_eq!(back, t32);
    // Only the file itself is left: the temporary it was written through is gone.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "descent-data-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
