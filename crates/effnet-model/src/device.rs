//! The one place a device name becomes a burn [`Device`]: `cpu` (burn's flex backend), `wgpu`
//! and `cuda` (cargo features of the same names), with `:N` for a device index.
//!
//! GPU devices compile their kernels at run time (NVRTC on CUDA, naga/SPIR-V on wgpu) and
//! autotune the fastest variant per shape. Before the first CUDA device is created,
//! [`parse_device`] points CubeCL's on-disk caches (compiled kernels and autotune results) at
//! [`gpu_cache_dir`], so a second run reuses the first one's work. (The caches need CubeCL's
//! `persistence`, which the `cuda` feature switches on; a `wgpu`-only build keeps CubeCL's
//! in-memory defaults, because persistence adds an embedded database to that build.)
//!
//! | setting | default | override |
//! |---|---|---|
//! | cache folder | `$XDG_CACHE_HOME/effnet/cubecl`, else `~/.cache/effnet/cubecl` | `EFFNET_CACHE_DIR` |
//! | kernel cache | on | `EFFNET_KERNEL_CACHE=0` |
//! | autotune level | `balanced` (CubeCL's default) | `EFFNET_AUTOTUNE_LEVEL` or `CUBECL_AUTOTUNE_LEVEL` = `minimal`, `balanced`, `extensive`, `full` |
//! | compile/autotune log | off | `EFFNET_GPU_LOG=<file>` (one line per kernel compiled and per autotune run) |

use burn::prelude::*;

/// Backends compiled into this build, for help texts and errors.
pub fn available_devices() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// Parses `cpu`, `wgpu[:N]` or `cuda[:N]` into a device; a backend not compiled in is a clear error.
pub fn parse_device(spec: &str) -> Result<Device, String> {
    let spec = spec.trim().to_ascii_lowercase();
    let (name, index) = match spec.split_once(':') {
        Some((n, i)) => {
            let i: usize = i
                .parse()
                .map_err(|_| format!("bad device index in '{spec}'"))?;
            (n.to_string(), i)
        }
        None => (spec.clone(), 0),
    };
    match name.as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu_device(index),
        "cuda" => cuda_device(index),
        other => Err(format!(
            "unknown device '{other}' (this build supports: {})",
            available_devices().join(", ")
        )),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: usize) -> Result<Device, String> {
    use burn::tensor::DeviceKind;
    if index == 0 {
        Ok(Device::wgpu(DeviceKind::DefaultDevice))
    } else {
        Ok(Device::wgpu(DeviceKind::DiscreteGpu(index)))
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: usize) -> Result<Device, String> {
    Err("device 'wgpu' is not compiled into this build (rebuild with `--features wgpu`)".into())
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device, String> {
    configure_gpu_caches();
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device, String> {
    Err("device 'cuda' is not compiled into this build (rebuild with `--features cuda`)".into())
}

/// Where GPU kernels and autotune results are cached: `$EFFNET_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/effnet/cubecl`, else `$HOME/.cache/effnet/cubecl` (never the working
/// directory; `None` only when none of these variables is set).
pub fn gpu_cache_dir() -> Option<std::path::PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = var("EFFNET_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    Some(base.join("effnet").join("cubecl"))
}

/// The CubeCL autotune level effnet asks for: `EFFNET_AUTOTUNE_LEVEL`, else
/// `CUBECL_AUTOTUNE_LEVEL`, else `balanced`; an unknown value is ignored (with the default).
pub fn autotune_level() -> &'static str {
    let pick = |k: &str| {
        let v = std::env::var(k).ok()?.trim().to_ascii_lowercase();
        ["minimal", "balanced", "extensive", "full"]
            .into_iter()
            .find(|l| *l == v)
    };
    pick("EFFNET_AUTOTUNE_LEVEL")
        .or_else(|| pick("CUBECL_AUTOTUNE_LEVEL"))
        .unwrap_or("balanced")
}

/// Sets CubeCL's global configuration once, before the first GPU device exists: on-disk
/// kernel and autotune caches in [`gpu_cache_dir`], the [`autotune_level`], and the optional
/// compile/autotune log. Settings from a `cubecl.toml` and `CUBECL_*` variables are kept where
/// effnet has nothing to say; a configuration CubeCL already loaded is left as it is.
#[cfg(feature = "cuda")]
fn configure_gpu_caches() {
    use cubecl_runtime::config::autotune::{AutotuneLevel, AutotuneLogLevel};
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::compilation::CompilationLogLevel;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut cfg = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if let Some(dir) = gpu_cache_dir() {
            // Best effort: an unwritable folder costs recompiles, never a failure.
            let _ = std::fs::create_dir_all(&dir);
            cfg.environment.path = CacheConfig::Directory(dir);
        }
        cfg.compilation.cache = std::env::var("EFFNET_KERNEL_CACHE").map_or(true, |v| v != "0");
        cfg.autotune.level = match autotune_level() {
            "minimal" => AutotuneLevel::Minimal,
            "extensive" => AutotuneLevel::Extensive,
            "full" => AutotuneLevel::Full,
            _ => AutotuneLevel::Balanced,
        };
        if let Some(log) = std::env::var_os("EFFNET_GPU_LOG").filter(|v| !v.is_empty()) {
            let log = std::path::PathBuf::from(log);
            cfg.compilation.logger.file = Some(log.clone());
            cfg.compilation.logger.level = CompilationLogLevel::Basic;
            cfg.autotune.logger.file = Some(log);
            cfg.autotune.logger.level = AutotuneLogLevel::Minimal;
        }
        CubeClRuntimeConfig::try_set(cfg);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_follows_the_documented_variables() {
        // One test touches the environment, so no other test races it.
        let saved: Vec<_> = ["EFFNET_CACHE_DIR", "XDG_CACHE_HOME", "HOME"]
            .iter()
            .map(|k| (*k, std::env::var_os(k)))
            .collect();
        // SAFETY: this is the only test of the crate that touches the environment, and nothing
        // else in its process reads these variables while it runs.
        let set = |k: &str, v: Option<&str>| unsafe {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        };
        set("EFFNET_CACHE_DIR", None);
        set("XDG_CACHE_HOME", None);
        set("HOME", Some("/home/u"));
        assert_eq!(gpu_cache_dir(), Some("/home/u/.cache/effnet/cubecl".into()));
        set("XDG_CACHE_HOME", Some("/xdg"));
        assert_eq!(gpu_cache_dir(), Some("/xdg/effnet/cubecl".into()));
        set("EFFNET_CACHE_DIR", Some("/mine"));
        assert_eq!(gpu_cache_dir(), Some("/mine".into()));
        for (k, v) in saved {
            // SAFETY: as above.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
    }
}
