//! The run folder as a resource one process owns: created only once a run is known to start
//! (a failed start leaves nothing behind), locked exclusively (`flock` on `<run>/.lock`) for the
//! whole run so a second `effnet train` into the same folder fails with a clear error instead of
//! interleaving logs and mixing checkpoints, and checked against the class list on resume.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A locked run folder; the lock is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    _lock: File,
}

impl RunFolder {
    /// Creates `dir` (and parents) for a new run and locks it. Refuses a folder that already holds
    /// a run. If locking fails, a folder this call created is removed again.
    pub fn create(dir: &Path) -> Result<Self> {
        if dir.join("latest.json").exists() {
            bail!(
                "{} already holds a run; continue it with --resume {} or pick another --experiment",
                dir.display(),
                dir.display()
            );
        }
        let existed = dir.exists();
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create run folder {}", dir.display()))?;
        Self::lock(dir).inspect_err(|_| {
            if !existed {
                let _ = fs::remove_dir_all(dir);
            }
        })
    }

    /// Locks the existing run folder `dir` for resuming.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("run folder {} does not exist", dir.display());
        }
        Self::lock(dir)
    }

    fn lock(dir: &Path) -> Result<Self> {
        let path = dir.join(".lock");
        let file = File::create(&path)
            .with_context(|| format!("cannot create lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                dir: dir.to_path_buf(),
                _lock: file,
            }),
            Err(TryLockError::WouldBlock) => bail!(
                "run folder {} is in use by another effnet process (lock {} held); wait for it \
                 to finish or pick another --experiment",
                dir.display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Refuses to resume a run on a different class set: the checkpoint's classifier and label
/// indices only mean something for the classes listed in the run's `classes.txt`.
pub fn check_same_classes(run: &Path, classes: &[String]) -> Result<()> {
    let path = run.join("classes.txt");
    let saved = effnet_data::dataset::load_classes(&path)
        .with_context(|| format!("cannot resume {}", run.display()))?;
    if saved == classes {
        return Ok(());
    }
    let missing: Vec<&String> = saved.iter().filter(|c| !classes.contains(c)).collect();
    let added: Vec<&String> = classes.iter().filter(|c| !saved.contains(c)).collect();
    bail!(
        "cannot resume {}: the training split has {} classes but the run was trained on {} \
         ({}); missing {missing:?}, new {added:?}. Resume with the same class folders or start a \
         new run",
        run.display(),
        classes.len(),
        saved.len(),
        path.display()
    )
}
