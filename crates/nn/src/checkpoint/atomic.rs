//! Replacing a file atomically: a temporary file beside it (`tempfile`), renamed over it.

use std::io::{self, Write};
use std::path::Path;

pub(super) fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Writes the file at `path` atomically: whatever `write` writes goes to a new
/// temporary file in the same directory (`.<file name>.<random>.tmp`, made by the
/// `tempfile` crate), which is flushed, `fsync`ed, and renamed over `path`; the
/// directory is then `fsync`ed (best effort) so the rename itself is durable.
///
/// If `write` fails, or any later step does, or `write` panics, the temporary file is
/// removed and `path` is left as it was: a reader sees the old file or the new one,
/// never a mix. (The new file has the default permissions, not the old one's.)
///
/// ```
/// use std::io::Write;
/// let dir = std::env::temp_dir().join(format!("descent-atomic-doc-{}", std::process::id()));
/// let _ = std::fs::remove_dir_all(&dir);
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("notes.txt");
/// descent_nn::checkpoint::write_atomically(&path, |w| w.write_all(b"v1")).unwrap();
/// let failed = descent_nn::checkpoint::write_atomically(&path, |w| {
///     w.write_all(b"half of v2")?;
///     Err(std::io::Error::other("disk full"))
/// });
/// assert!(failed.unwrap_err().to_string().contains("disk full"));
/// assert_eq!(std::fs::read(&path).unwrap(), b"v1");
/// assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1); // no temporary file left
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
/// The first I/O error, with what was being done.
pub fn write_atomically(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let path = path.as_ref();
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // `tempfile` makes its files readable by their owner alone; a checkpoint gets the
    // permissions any new file gets (0o666 less the umask), as `fs::write` would give.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    // Dropping `tmp` (on an error or a panic) removes the temporary file.
    let mut tmp = builder.tempfile_in(dir).map_err(|e| {
        context(
            e,
            format!("cannot create a temporary file in {}", dir.display()),
        )
    })?;
    let tmp_path = tmp.path().to_owned();
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| context(e, format!("cannot write {}", tmp_path.display())))?;
        w.flush()
            .map_err(|e| context(e, format!("cannot write {}", tmp_path.display())))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| context(e, format!("cannot flush {} to disk", tmp_path.display())))?;
    tmp.persist(path).map_err(|e| {
        context(
            e.error,
            format!("cannot rename {} to {}", tmp_path.display(), path.display()),
        )
    })?;
    // The rename is durable once the directory is; not every platform or file system
    // can sync a directory, so this is best effort.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
