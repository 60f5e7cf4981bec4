//! Files that pass the scan but fail to decode: each is warned about once in a run, remembered
//! (with the epoch it failed in, in the checkpoint's state), left out of every later epoch and
//! counted with the files the scan set aside.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use effnet_data::ImageFolder;
use serde_json::json;

use super::Trainer;
use crate::output;
use crate::report::{EvalProgress, Reporter};

impl Trainer {
    /// After an epoch in which files failed to decode: one summary warning and a `log.jsonl`
    /// record counting them with the files the scan set aside.
    pub(super) fn report_decode_failures(&mut self, epoch: usize) -> Result<()> {
        let failures = &self.state.decode_failures;
        let new = failures.iter().filter(|(_, e)| *e == epoch).count();
        if new == 0 {
            return Ok(());
        }
        let (t, v) = (&self.splits.train, &self.splits.val);
        let scanned = t.unreadable_count() + v.unreadable_count();
        let total = scanned + failures.len();
        self.reporter.warning(&format!(
            "{new} file(s) failed to decode in epoch {}: {total} unreadable files in all \
             ({scanned} set aside by the scan, {} failed to decode) are left out",
            epoch + 1,
            failures.len()
        ));
        output::append_log(
            self.folder.path(),
            &json!({"kind": "data", "epoch": epoch + 1, "unreadable": total,
                    "decode_failures": failures.len(), "new_decode_failures": new}),
        )
    }

    /// `ds` without the files that failed to decode before `epoch` (0-based): they count as
    /// unreadable, like the files the scan set aside.
    pub(super) fn without_failures(&self, ds: &ImageFolder, epoch: usize) -> ImageFolder {
        let failed: HashSet<&Path> = (self.state.decode_failures.iter())
            .filter(|(_, e)| *e < epoch)
            .map(|(p, _)| p.as_path())
            .collect();
        let mut out = ds.clone();
        if failed.is_empty() {
            return out;
        }
        out.samples.retain(|(p, _)| !failed.contains(p.as_path()));
        for (p, _) in ds
            .samples
            .iter()
            .filter(|(p, _)| failed.contains(p.as_path()))
        {
            out.unreadable
                .push((p.clone(), "failed to decode in an earlier epoch".into()));
        }
        out
    }
}

/// The run's reporter, told about a file that fails to decode only the first time in the run;
/// the file is remembered with the epoch it failed in.
pub(super) struct FirstSkips<'a> {
    pub inner: &'a mut dyn Reporter,
    pub known: &'a mut Vec<(PathBuf, usize)>,
    pub epoch: usize,
}

impl Reporter for FirstSkips<'_> {
    fn eval_progress(&mut self, p: &EvalProgress<'_>) {
        self.inner.eval_progress(p);
    }

    fn warning(&mut self, message: &str) {
        self.inner.warning(message);
    }

    fn skipped(&mut self, path: &Path, reason: &str) {
        if self.known.iter().any(|(p, _)| p == path) {
            return;
        }
        self.known.push((path.to_path_buf(), self.epoch));
        self.inner.warning(&format!(
            "skipped {}: {reason} (left out of later epochs)",
            path.display()
        ));
    }
}
