//! CSV datasets, splits and loaders.

use descent_data::{
    CsvOptions, Dataset, Error, Loader, TargetColumn, Targets, TensorDataset, read_csv,
};
use descent_optim::DataLoader;
use descent_tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("descent-data-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_digits_file_reads_as_1797_images_of_64_pixels() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits.csv");
    let d = read_csv::<f32>(path, &CsvOptions::classes(10).scale(1.0 / 16.0)).unwrap();
    assert_eq!(d.inputs().shape(), [1797, 64]);
    let classes = d.targets().classes().unwrap();
    // The first image of the file is a 0 whose third pixel is 5 (of 16).
    assert_eq!((classes[0], d.inputs().data()[2]), (0, 5.0 / 16.0));
    let mut count = [0usize; 10];
    classes.iter().for_each(|&c| count[c] += 1);
    assert!(count.iter().all(|&n| (170..=190).contains(&n)), "{count:?}");
}

#[test]
fn targets_by_name_or_position_and_as_values() {
    let path = write("xy.csv", "y,x1,x2\n0.5,1,2\n-1,3,4\n");
    for target in [
        TargetColumn::First,
        TargetColumn::Index(0),
        TargetColumn::Named("y".into()),
    ] {
        let d = read_csv::<f64>(&path, &CsvOptions::values().target(target)).unwrap();
        assert_eq!(d.inputs().data(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(d.targets().values().unwrap().data(), [0.5, -1.0]);
    }
    let bare = write("bare.csv", "1;2;1\n3;4;0\n");
    let d = read_csv::<f64>(&bare, &CsvOptions::classes(2).header(false).delimiter(b';')).unwrap();
    assert_eq!(d.targets().classes().unwrap(), [1, 0]);
}

#[test]
fn bad_files_name_the_line_and_column() {
    let cases = [
        (
            "a,b,y\n1,2,0\n1,x,1\n",
            CsvOptions::classes(2),
            "bad1.csv:3: column \"b\": \"x\" is not a finite number",
        ),
        (
            "a,b,y\n1,2,0\n1,2,7\n",
            CsvOptions::classes(2),
            "bad2.csv:3: column \"y\": \"7\" is not a class index below 2",
        ),
        (
            "a,b,y\n1,2,0.5\n",
            CsvOptions::classes(2),
            "\"0.5\" is not a class index below 2",
        ),
        (
            "a,b,y\n1,2,-1\n",
            CsvOptions::classes(2),
            "\"-1\" is not a class index below 2",
        ),
        (
            "a,b,y\n1,nan,0\n",
            CsvOptions::classes(2),
            "\"nan\" is not a finite number",
        ),
        (
            "a,b,y\n1,2,0\n1,2\n",
            CsvOptions::classes(2),
            "bad6.csv:3: 2 fields, but the first row has 3",
        ),
        ("a,b,y\n", CsvOptions::classes(2), "bad7.csv: no data rows"),
        (
            "y\n1\n",
            CsvOptions::classes(2),
            "no input columns beside the target",
        ),
        (
            "a,b,y\n1,2,0\n",
            CsvOptions::classes(2).target(TargetColumn::Named("z".into())),
            "no column \"z\" (the file has [\"a\", \"b\", \"y\"])",
        ),
        (
            "a,b,y\n1,2,0\n",
            CsvOptions::classes(2).target(TargetColumn::Index(3)),
            "no column 3",
        ),
    ];
    for (i, (text, options, says)) in cases.into_iter().enumerate() {
        let path = write(&format!("bad{}.csv", i + 1), text);
        let err = read_csv::<f64>(&path, &options).unwrap_err().to_string();
        assert!(err.contains(says), "case {}: {err}", i + 1);
    }
    let err = read_csv::<f64>("/nonexistent/data.csv", &CsvOptions::values()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("/nonexistent/data.csv"));
}

fn numbered(n: usize) -> TensorDataset<f64> {
    // Sample i has inputs [i, 10 i] and class i % 3.
    let x = Tensor::from_fn(&[n, 2], |k| {
        if k % 2 == 0 {
            (k / 2) as f64
        } else {
            (k / 2 * 10) as f64
        }
    });
    TensorDataset::new(x, Targets::Classes((0..n).map(|i| i % 3).collect())).unwrap()
}

#[test]
fn batches_carry_the_samples_their_indices_name() {
    let data = numbered(10);
    let loader = Loader::new(&data, 4).unwrap().shuffle(3);
    let mut seen = Vec::new();
    for batch in loader.epoch(2) {
        for (row, &i) in batch.indices.iter().enumerate() {
            assert_eq!(
                batch.inputs.data()[2 * row..2 * row + 2],
                [i as f64, 10.0 * i as f64]
            );
            assert_eq!(batch.targets.classes().unwrap()[row], i % 3);
        }
        seen.extend(batch.indices);
    }
    // Every sample once, in the DataLoader's order for that seed and epoch.
    assert_eq!(seen, DataLoader::new(10, 4).unwrap().shuffle(3).order(2));
    let again: Vec<_> = loader.epoch(2).flat_map(|b| b.indices).collect();
    assert_eq!(seen, again);
    let other: Vec<_> = loader.epoch(3).flat_map(|b| b.indices).collect();
    assert_ne!(seen, other);
}

#[test]
fn drop_last_and_the_three_regimes() {
    let data = numbered(10);
    let sizes =
        |l: &Loader<'_, f64, TensorDataset<f64>>| l.epoch(0).map(|b| b.len()).collect::<Vec<_>>();
    assert_eq!(sizes(&Loader::new(&data, 4).unwrap()), [4, 4, 2]);
    assert_eq!(
        sizes(&Loader::new(&data, 4).unwrap().drop_last(true)),
        [4, 4]
    );
    let full = Loader::with_order(&data, DataLoader::full_batch(10).unwrap()).unwrap();
    assert_eq!(sizes(&full), [10]);
    let sgd = Loader::with_order(&data, DataLoader::stochastic(10).unwrap()).unwrap();
    assert_eq!(sizes(&sgd), [1; 10]);
    let err = Loader::with_order(&data, DataLoader::full_batch(9).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Loader::with_order: the order is for 9 samples but the dataset has 10"
    );
    assert!(Loader::new(&data, 0).is_err());
}

#[test]
fn values_targets_batch_along_their_first_axis() {
    let y = Tensor::from_fn(&[5, 2], |k| k as f32);
    let data = TensorDataset::new(Tensor::<f32>::zeros(&[5, 3]), Targets::Values(y)).unwrap();
    let b = data.batch(&[4, 1]);
    assert_eq!(b.targets.values().unwrap().shape(), [2, 2]);
    assert_eq!(b.targets.values().unwrap().data(), [8.0, 9.0, 2.0, 3.0]);
    let err = TensorDataset::new(Tensor::<f32>::zeros(&[5, 3]), Targets::Classes(vec![0; 4]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "TensorDataset::new: inputs [5, 3] hold 5 samples but there are 4 targets"
    );
}

#[test]
fn a_split_is_a_seeded_permutation_cut_in_two() {
    let data = numbered(50);
    let (a, b) = data.split(0.7, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    let (a2, _) = data.split(0.7, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    assert_eq!(a, a2);
    assert_eq!((a.len(), b.len()), (35, 15));
    let mut firsts: Vec<usize> = a
        .inputs()
        .data()
        .iter()
        .chain(b.inputs().data())
        .step_by(2)
        .map(|&x| x as usize)
        .collect();
    assert_ne!(
        firsts[..35],
        (0..35).collect::<Vec<_>>()[..],
        "not shuffled"
    );
    firsts.sort();
    assert_eq!(firsts, (0..50).collect::<Vec<_>>());
    assert!(data.split(1.5, &mut ChaCha8Rng::seed_from_u64(9)).is_err());
    assert!(data.subset(&[50]).is_err());
}
