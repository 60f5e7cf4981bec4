//! Helpers shared by the CLI test binaries: run the built `effnet` from the repository root and
//! check that a failure is a clean, one-line-per-problem error.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (photos, fixtures and configs are addressed from there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the `effnet` binary with `args` in the repository root.
pub fn effnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run effnet")
}

/// Runs the `effnet` binary with `args` in the repository root and `env` set.
pub fn effnet_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("run effnet")
}

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Failed, stderr mentions `needle`, every stderr line is an `error:` line, and nothing looks
/// like a panic or a backtrace.
pub fn assert_clean_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for line in err.lines() {
        assert!(
            line.starts_with("error: "),
            "unexpected stderr line: {line}"
        );
    }
}
