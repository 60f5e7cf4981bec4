//! Data errors: each names the file and the reason, fit for a one-line CLI message.

use std::path::PathBuf;

/// What can go wrong reading images and datasets.
#[derive(Debug)]
pub enum DataError {
    /// A file could not be opened or decoded as an image.
    Image {
        /// The file.
        path: PathBuf,
        /// Why (missing, empty, corrupt, unsupported format...).
        reason: String,
    },
    /// A dataset folder is unusable.
    Dataset {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for DataError {
    /// Always one line: decoder messages and file names may contain newlines or other control
    /// characters, which would split a CLI error across lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Self::Image { path, reason } | Self::Dataset { path, reason }) = self;
        f.write_str(&one_line(&format!("{}: {reason}", path.display())))
    }
}

impl std::error::Error for DataError {}

/// Replaces every control character (newline, carriage return, tab...) by a space, so an error
/// message stays on one line whatever a decoder or a file name put in it.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
