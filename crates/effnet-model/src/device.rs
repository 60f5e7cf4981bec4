//! The one place a device name becomes a burn [`Device`]: `cpu` (burn's flex backend), `wgpu`
//! and `cuda` (cargo features of the same names), with `:N` for a device index.

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
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device, String> {
    Err("device 'cuda' is not compiled into this build (rebuild with `--features cuda`)".into())
}
