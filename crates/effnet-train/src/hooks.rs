//! Fault injection for tests: stop like Ctrl-C after a number of steps, a NaN loss or infinite
//! gradients at a given step. Not part of the recipe (a saved `config.toml` never carries a
//! fault); a test passes them to [`Trainer::set_test_hooks`](crate::Trainer::set_test_hooks), and
//! the `effnet` binary reads them from [`TestHooks::ENV`] so tests of the binary can use them.

use anyhow::{Context, Result, bail};

/// Faults to inject into a run; absent disables each. Global steps count from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// Stop like Ctrl-C (checkpoint, return interrupted) after this many global steps.
    pub stop_after_steps: Option<u64>,
    /// Replace the loss by NaN at this global step, to exercise divergence handling.
    pub nan_at_step: Option<u64>,
    /// Make the gradients infinite at this global step, to exercise the loss scaler's skip (the
    /// loss itself stays finite).
    pub inf_grad_at_step: Option<u64>,
}

impl TestHooks {
    /// The environment variable the `effnet` binary reads hooks from:
    /// `EFFNET_TEST_HOOKS=stop_after_steps=12,nan_at_step=3`.
    pub const ENV: &'static str = "EFFNET_TEST_HOOKS";

    /// Parses `key=N[,key=N...]` (keys as the fields' names); empty text is no hooks.
    pub fn parse(text: &str) -> Result<Self> {
        let mut hooks = Self::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("test hook '{item}' is not key=N"))?;
            let n: u64 = value
                .trim()
                .parse()
                .with_context(|| format!("test hook '{item}': not a step number"))?;
            let slot = match key.trim() {
                "stop_after_steps" => &mut hooks.stop_after_steps,
                "nan_at_step" => &mut hooks.nan_at_step,
                "inf_grad_at_step" => &mut hooks.inf_grad_at_step,
                other => bail!(
                    "unknown test hook '{other}' (stop_after_steps, nan_at_step, inf_grad_at_step)"
                ),
            };
            *slot = Some(n);
        }
        Ok(hooks)
    }

    /// The hooks named by [`Self::ENV`] (none when it is unset).
    pub fn from_env() -> Result<Self> {
        match std::env::var(Self::ENV) {
            Ok(text) => Self::parse(&text).with_context(|| Self::ENV.to_string()),
            Err(_) => Ok(Self::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_parse_and_reject_unknown_keys() {
        let h = TestHooks::parse("stop_after_steps=12, nan_at_step=3").unwrap();
        assert_eq!(h.stop_after_steps, Some(12));
        assert_eq!(h.nan_at_step, Some(3));
        assert_eq!(h.inf_grad_at_step, None);
        assert_eq!(TestHooks::parse("").unwrap(), TestHooks::default());
        assert!(TestHooks::parse("stop_after=1").is_err());
        assert!(TestHooks::parse("nan_at_step=x").is_err());
    }
}
