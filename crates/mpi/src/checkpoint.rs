//! Checkpoints of a data-parallel run: written by rank 0, atomically; read by rank 0
//! and broadcast, so a run resumes on any number of ranks.
//!
//! A checkpoint directory holds one sub-directory per saved step,
//! `step-000000012/` with
//!
//! - `params.safetensors`: the parameters ([`descent_nn::checkpoint::save`]);
//! - `optimizer.safetensors`: the optimiser's state
//!   ([`descent_nn::checkpoint::save_optimizer`]: momentum buffers, step counts);
//! - `progress.txt`: [`Progress`], the steps taken and the position in the data order;
//!
//! and a file `LATEST` naming the newest complete one. Every file is written with
//! [`descent_nn::checkpoint::write_atomically`] (a temporary file, `fsync`, rename),
//! and `LATEST` is replaced only once its step's three files are complete, so a job
//! killed at any moment leaves the previous checkpoint whole and named. Older step
//! directories are removed after `LATEST` moves on.
//!
//! Data order, micro-batches and noise are functions of the step and epoch alone, not
//! of the rank count, so a run resumed from step `k` on any number of ranks takes the
//! steps `k + 1, …` of one uninterrupted process, bit for bit.

use crate::{DataParallel, Error, ShardedOptimizer};
use descent_nn::checkpoint as ck;
use descent_optim::Optimizer;
use descent_tape::ParamStore;
use descent_tensor::Float;
use mpi::datatype::Equivalence;
use std::path::{Path, PathBuf};

/// Where a run is: what a resumed run needs besides parameters and optimiser state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Optimiser steps taken since the start.
    pub step: u64,
    /// The epoch the next step belongs to.
    pub epoch: u64,
    /// The next global batch's index within that epoch's order.
    pub position: u64,
}

impl Progress {
    fn to_text(self) -> String {
        format!(
            "step {}\nepoch {}\nposition {}\n",
            self.step, self.epoch, self.position
        )
    }

    fn parse(text: &str, path: &str) -> Result<Self, Error> {
        let mut p = Progress::default();
        let mut seen = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || Error::Progress {
                path: path.to_string(),
                reason: format!(
                    "cannot read the line {line:?} (want `step N`, `epoch N`, `position N`)"
                ),
            };
            let (key, value) = line.split_once(' ').ok_or_else(bad)?;
            let value: u64 = value.trim().parse().map_err(|_| bad())?;
            match key {
                "step" => p.step = value,
                "epoch" => p.epoch = value,
                "position" => p.position = value,
                _ => return Err(bad()),
            }
            seen += 1;
        }
        if seen != 3 {
            return Err(Error::Progress {
                path: path.to_string(),
                reason: format!("{seen} of the 3 entries (step, epoch, position)"),
            });
        }
        Ok(p)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Saves a checkpoint of the run in `dir` (created if need be): rank 0 writes, the
/// other ranks return at once (every rank holds the same parameters and state).
///
/// # Errors
/// On rank 0, the first write that failed; the previous checkpoint is then intact
/// and still named by `LATEST`.
pub fn save<T: Float, O: Optimizer<T> + ?Sized>(
    dp: &DataParallel<'_>,
    dir: impl AsRef<Path>,
    store: &ParamStore<T>,
    optimizer: &O,
    progress: Progress,
) -> Result<(), Error> {
    if dp.rank() != 0 {
        return Ok(());
    }
    save_local(dir.as_ref(), store, optimizer, progress)
}

/// [`save`] from one process, without MPI: what the single-process reference writes.
///
/// # Errors
/// As [`save`].
pub fn save_local<T: Float, O: Optimizer<T> + ?Sized>(
    dir: &Path,
    store: &ParamStore<T>,
    optimizer: &O,
    progress: Progress,
) -> Result<(), Error> {
    let name = format!("step-{:09}", progress.step);
    let step_dir = dir.join(&name);
    std::fs::create_dir_all(&step_dir).map_err(io(&step_dir))?;
    ck::save(store, step_dir.join("params.safetensors"))?;
    ck::save_optimizer(store, optimizer, step_dir.join("optimizer.safetensors"))?;
    let progress_path = step_dir.join("progress.txt");
    ck::write_atomically(&progress_path, |w| {
        w.write_all(progress.to_text().as_bytes())
    })
    .map_err(io(&progress_path))?;
    let latest = dir.join("LATEST");
    ck::write_atomically(&latest, |w| writeln!(w, "{name}")).map_err(io(&latest))?;
    // Older steps are no longer named: remove them (best effort).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// [`save`] for a [`ShardedOptimizer`]: every rank must call it (the ranks' parts of
/// the optimiser's state are gathered first); rank 0 writes the whole state, as one
/// process stepping the whole store would, so the checkpoint resumes on any number
/// of ranks, sharded or not.
///
/// # Errors
/// As [`save`], and the gather's [`Error::Sharding`] on every rank.
pub fn save_sharded<T, O>(
    dp: &DataParallel<'_>,
    dir: impl AsRef<Path>,
    store: &ParamStore<T>,
    optimizer: &ShardedOptimizer<T, O>,
    progress: Progress,
) -> Result<(), Error>
where
    T: Float + Equivalence + 'static,
    O: Optimizer<T> + Clone,
{
    let state = optimizer.state(dp, store)?;
    if dp.rank() != 0 {
        return Ok(());
    }
    // The wrapped optimiser's kind and settings, holding the whole state.
    let mut whole = optimizer.inner().clone();
    whole.load_state(store, state)?;
    save_local(dir.as_ref(), store, &whole, progress)
}

/// [`load`] for a [`ShardedOptimizer`]: every rank loads the parameters and keeps its
/// shard of the optimiser's state. Any checkpoint of the same store and optimiser
/// kind will do, sharded or not, from any number of ranks.
///
/// # Errors
/// As [`load`].
pub fn load_sharded<T, O>(
    dp: &DataParallel<'_>,
    dir: impl AsRef<Path>,
    store: &mut ParamStore<T>,
    optimizer: &mut ShardedOptimizer<T, O>,
) -> Result<Option<Progress>, Error>
where
    T: Float + Equivalence + 'static,
    O: Optimizer<T> + Clone,
{
    let mut whole = optimizer.inner().clone();
    let Some(progress) = load(dp, dir, store, &mut whole)? else {
        return Ok(None);
    };
    optimizer.load_state(store, whole.state(store))?;
    Ok(Some(progress))
}

/// The files of the checkpoint `LATEST` names in `dir`, or `None` when there is none.
fn latest(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let latest = dir.join("LATEST");
    match std::fs::read_to_string(&latest) {
        Ok(name) => Ok(Some(dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&latest)(e)),
    }
}

/// Loads the newest checkpoint of `dir` into `store` and `optimizer` on every rank:
/// rank 0 reads the files and broadcasts their bytes (no shared file system needed),
/// every rank loads them. Returns the progress to resume from, or `None` (and
/// changes nothing) when `dir` holds no checkpoint.
///
/// # Errors
/// A file that cannot be read (on every rank, with rank 0's message) or does not
/// fit the store or optimiser.
pub fn load<T: Float + Equivalence, O: Optimizer<T> + ?Sized>(
    dp: &DataParallel<'_>,
    dir: impl AsRef<Path>,
    store: &mut ParamStore<T>,
    optimizer: &mut O,
) -> Result<Option<Progress>, Error> {
    let dir = dir.as_ref();
    // Rank 0 reads; every rank learns the outcome: 0 no checkpoint, 1 found, 2 an
    // error (whose message follows), so that no rank waits for bytes never sent.
    let (status, files, message) = if dp.rank() == 0 {
        match read_latest(dir) {
            Ok(Some(files)) => (1u8, files, String::new()),
            Ok(None) => (0, Default::default(), String::new()),
            Err(e) => (2, Default::default(), e.to_string()),
        }
    } else {
        (0, Default::default(), String::new())
    };
    match dp.broadcast_bytes(0, &[status]).first() {
        Some(1) => {}
        Some(2) => {
            let message = dp.broadcast_bytes(0, message.as_bytes());
            return Err(Error::Io {
                path: dir.display().to_string(),
                source: std::io::Error::other(format!(
                    "rank 0 could not read the checkpoint: {}",
                    String::from_utf8_lossy(&message)
                )),
            });
        }
        _ => return Ok(None),
    }
    let files = files.map(|f| dp.broadcast_bytes(0, &f));
    from_bytes(dir, &files, store, optimizer).map(Some)
}

/// The bytes of the three files of the checkpoint `LATEST` names, if any.
fn read_latest(dir: &Path) -> Result<Option<[Vec<u8>; 3]>, Error> {
    let Some(step_dir) = latest(dir)? else {
        return Ok(None);
    };
    let mut files: [Vec<u8>; 3] = Default::default();
    for (f, name) in files.iter_mut().zip([
        "params.safetensors",
        "optimizer.safetensors",
        "progress.txt",
    ]) {
        let path = step_dir.join(name);
        *f = std::fs::read(&path).map_err(io(&path))?;
    }
    Ok(Some(files))
}

/// [`load`] from one process, without MPI.
///
/// # Errors
/// As [`load`].
pub fn load_local<T: Float, O: Optimizer<T> + ?Sized>(
    dir: &Path,
    store: &mut ParamStore<T>,
    optimizer: &mut O,
) -> Result<Option<Progress>, Error> {
    match read_latest(dir)? {
        Some(files) => from_bytes(dir, &files, store, optimizer).map(Some),
        None => Ok(None),
    }
}

fn from_bytes<T: Float, O: Optimizer<T> + ?Sized>(
    dir: &Path,
    files: &[Vec<u8>; 3],
    store: &mut ParamStore<T>,
    optimizer: &mut O,
) -> Result<Progress, Error> {
    ck::load_into_from_bytes(store, &files[0])?;
    ck::load_optimizer_from_bytes(store, optimizer, &files[1])?;
    Progress::parse(
        &String::from_utf8_lossy(&files[2]),
        &dir.join("progress.txt").display().to_string(),
    )
}
