//! `effnet models [PATTERN]`: the architectures effnet builds (timm's names, torchvision's
//! EfficientNetV2, effnet's own), with timm-style wildcards, parameter counts, which engines run
//! them, timm's pretrained tags and the other names that select them.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use effnet_model::presets::aliases;
use effnet_model::{
    EFFNET_ARCHITECTURES, EfficientNetConfig, TIMM_ARCHITECTURES, closest_names, pretrained_tags,
    wildcard_match,
};

/// Arguments of `effnet models`.
#[derive(Args)]
pub struct ModelsArgs {
    /// Wildcard pattern as timm's `list_models` takes it (`*lite*`, `tf_efficientnet_b?`,
    /// `tinynet_[a-c]`); `arch.tag` patterns match pretrained tags (`*.ns_jft*`).
    pub pattern: Option<String>,
}

fn source(name: &str) -> &'static str {
    if TIMM_ARCHITECTURES.contains(&name) {
        "timm"
    } else if EFFNET_ARCHITECTURES.contains(&name) {
        "effnet"
    } else {
        "torchvision"
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `effnet models`.
pub fn run(a: ModelsArgs) -> anyhow::Result<ExitCode> {
    let pattern = a.pattern.as_deref().unwrap_or("*");
    let (arch_pattern, tag_pattern) = match pattern.split_once('.') {
        Some((arch, tag)) => (arch, Some(tag)),
        None => (pattern, None),
    };
    println!(
        "{:<26} {:>12} {:>5} {:<6} {:<4} {:<11} {:<38} aliases",
        "model", "params", "size", "native", "onnx", "source", "pretrained tags (timm)"
    );
    let mut shown = 0;
    for name in effnet::preset_names() {
        let named = wildcard_match(arch_pattern, name)
            || aliases(name).iter().any(|a| wildcard_match(pattern, a));
        let tags: Vec<String> = pretrained_tags(name)
            .iter()
            .filter(|t| tag_pattern.is_none_or(|p| wildcard_match(p, &t.tag)))
            .map(|t| t.tag.clone())
            .collect();
        if !named || (tag_pattern.is_some() && tags.is_empty()) {
            continue;
        }
        let cfg = EfficientNetConfig::preset(name)?;
        let yes_no = |unsupported: Option<&str>| if unsupported.is_some() { "no" } else { "yes" };
        println!(
            "{:<26} {:>12} {:>5} {:<6} {:<4} {:<11} {:<38} {}",
            name,
            thousands(cfg.num_params()),
            cfg.eval_size,
            yes_no(cfg.native_unsupported()),
            yes_no(cfg.onnx_unsupported()),
            source(name),
            if tags.is_empty() {
                "-".into()
            } else {
                tags.join(", ")
            },
            aliases(name).join(", ")
        );
        shown += 1;
    }
    if shown == 0 {
        bail!(
            "no model matches '{pattern}' (closest: {})",
            closest_names(pattern.trim_matches('*'), 3).join(", ")
        );
    }
    println!(
        "{shown} of {} models{} ({} timm architectures; native/onnx: whether effnet's CPU \
         executor and ONNX export run it, else the burn engine does; docs/models.md)",
        effnet::preset_names().len(),
        if a.pattern.is_some() {
            format!(" match '{pattern}'")
        } else {
            String::new()
        },
        TIMM_ARCHITECTURES.len()
    );
    Ok(ExitCode::SUCCESS)
}
