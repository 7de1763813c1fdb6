//! Model parameters a caller may change from the runtime's defaults.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Init-time parameters. `None` keeps the runtime's own default (rkl always
/// starts from `rkllm_createDefaultParam()` and changes only what is set).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Context window in tokens (runtime default 512).
    pub max_context_len: Option<i32>,
    /// Tokens to generate per request; <= 0 means until the end or the context
    /// is full (runtime default -1).
    pub max_new_tokens: Option<i32>,
    /// Top-k sampling; 0 disables it (default 40).
    pub top_k: Option<i32>,
    /// Tokens kept at the start when the context shifts; -1 = runtime choice.
    /// Below `max_context_len` (its default 512 when unset).
    pub n_keep: Option<i32>,
    /// Nucleus sampling mass, 0..=1 (default 0.9).
    pub top_p: Option<f32>,
    /// Sampling temperature, >= 0 (default 0.8).
    pub temperature: Option<f32>,
    /// Repetition penalty, >= 0 (default 1.1).
    pub repeat_penalty: Option<f32>,
    /// Frequency penalty (default 0).
    pub frequency_penalty: Option<f32>,
    /// Presence penalty (default 0).
    pub presence_penalty: Option<f32>,
    /// Mirostat mode: 0 off, 1 or 2 (default 0).
    pub mirostat: Option<i32>,
    /// Mirostat target entropy, > 0 (default 5.0).
    pub mirostat_tau: Option<f32>,
    /// Mirostat learning rate, > 0 (default 0.1).
    pub mirostat_eta: Option<f32>,
    /// Leave special tokens out of the text (default true).
    pub skip_special_token: Option<bool>,
    /// Read word embeddings from flash instead of memory (default true).
    pub embed_flash: Option<bool>,
    /// CPU cores the runtime may use, 1..=8 (default 4).
    pub enabled_cpus_num: Option<i8>,
    /// Bit mask of those cores, bits 0..=7 (the boards have 8 cores), not
    /// empty; with `enabled_cpus_num` set, as many bits as that (default:
    /// the runtime's choice).
    pub enabled_cpus_mask: Option<u32>,
    /// NPU domain id (default 0).
    pub base_domain_id: Option<i32>,
    /// A cross-attention model: requests pass the encoder state
    /// ([`GenerateRequest::cross_attn`](crate::GenerateRequest::cross_attn));
    /// 1.2.1 and later (default false).
    #[serde(default)]
    pub use_cross_attn: Option<bool>,
}

/// Sampling settings of one request, for runtimes that take them per run
/// (1.3). Each `None` keeps the model's value: its open setting, else the
/// runtime's default. The ranges are those of [`ModelParams`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Top-k sampling; 0 disables it.
    pub top_k: Option<i32>,
    /// Nucleus sampling mass, 0..=1.
    pub top_p: Option<f32>,
    /// Sampling temperature, >= 0.
    pub temperature: Option<f32>,
    /// Repetition penalty, >= 0.
    pub repeat_penalty: Option<f32>,
    /// Frequency penalty, -100..=100.
    pub frequency_penalty: Option<f32>,
    /// Presence penalty, -100..=100.
    pub presence_penalty: Option<f32>,
    /// Mirostat mode: 0 off, 1 or 2.
    pub mirostat: Option<i32>,
    /// Mirostat target entropy, > 0.
    pub mirostat_tau: Option<f32>,
    /// Mirostat learning rate, > 0.
    pub mirostat_eta: Option<f32>,
}

/// Every sampling value of a run, as the runtime takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingValues {
    pub top_k: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
}

impl Sampling {
    /// Refuses values out of range, by the rules of [`ModelParams`].
    pub fn validate(&self) -> Result<()> {
        ModelParams {
            top_k: self.top_k,
            top_p: self.top_p,
            temperature: self.temperature,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            mirostat: self.mirostat,
            mirostat_tau: self.mirostat_tau,
            mirostat_eta: self.mirostat_eta,
            ..ModelParams::default()
        }
        .validate()
    }

    /// The run's values: these where set, else `model`'s.
    pub fn over(&self, model: &SamplingValues) -> SamplingValues {
        SamplingValues {
            top_k: self.top_k.unwrap_or(model.top_k),
            top_p: self.top_p.unwrap_or(model.top_p),
            temperature: self.temperature.unwrap_or(model.temperature),
            repeat_penalty: self.repeat_penalty.unwrap_or(model.repeat_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(model.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(model.presence_penalty),
            mirostat: self.mirostat.unwrap_or(model.mirostat),
            mirostat_tau: self.mirostat_tau.unwrap_or(model.mirostat_tau),
            mirostat_eta: self.mirostat_eta.unwrap_or(model.mirostat_eta),
        }
    }
}

impl ModelParams {
    /// The sampling values of a model opened with these parameters on a
    /// runtime whose defaults are `defaults`.
    pub fn sampling_over(&self, defaults: &SamplingValues) -> SamplingValues {
        Sampling {
            top_k: self.top_k,
            top_p: self.top_p,
            temperature: self.temperature,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            mirostat: self.mirostat,
            mirostat_tau: self.mirostat_tau,
            mirostat_eta: self.mirostat_eta,
        }
        .over(defaults)
    }
}

fn check(ok: bool, what: &str, value: impl std::fmt::Display, range: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} = {value} is out of range (expected {range})")))
    }
}

fn check_f32(value: Option<f32>, what: &str, ok: impl Fn(f32) -> bool, range: &str) -> Result<()> {
    match value {
        Some(v) => check(v.is_finite() && ok(v), what, v, range),
        None => Ok(()),
    }
}

fn check_i32(value: Option<i32>, what: &str, ok: impl Fn(i32) -> bool, range: &str) -> Result<()> {
    match value {
        Some(v) => check(ok(v), what, v, range),
        None => Ok(()),
    }
}

/// Largest context rkl passes on; far above any model the NPU can hold.
pub const MAX_CONTEXT: i32 = 1 << 20;

/// The runtime's documented default `max_context_len`.
const DEFAULT_CONTEXT: i32 = 512;

/// CPU cores of the supported SoCs (RK3588, RK3576: 4 + 4).
const CORES: u32 = 8;

impl ModelParams {
    /// Refuses values the runtime would misbehave on, before it sees them.
    pub fn validate(&self) -> Result<()> {
        check_i32(self.max_context_len, "max_context_len", |v| (1..=MAX_CONTEXT).contains(&v), "1..=1048576")?;
        check_i32(self.max_new_tokens, "max_new_tokens", |v| v >= -1, ">= -1")?;
        check_i32(self.top_k, "top_k", |v| v >= 0, ">= 0")?;
        check_i32(self.n_keep, "n_keep", |v| v >= -1, ">= -1")?;
        check_f32(self.top_p, "top_p", |v| (0.0..=1.0).contains(&v), "0..=1")?;
        check_f32(self.temperature, "temperature", |v| v >= 0.0, ">= 0")?;
        check_f32(self.repeat_penalty, "repeat_penalty", |v| v >= 0.0, ">= 0")?;
        check_f32(self.frequency_penalty, "frequency_penalty", |v| v.abs() <= 100.0, "-100..=100")?;
        check_f32(self.presence_penalty, "presence_penalty", |v| v.abs() <= 100.0, "-100..=100")?;
        check_i32(self.mirostat, "mirostat", |v| (0..=2).contains(&v), "0, 1 or 2")?;
        check_f32(self.mirostat_tau, "mirostat_tau", |v| v > 0.0, "> 0")?;
        check_f32(self.mirostat_eta, "mirostat_eta", |v| v > 0.0, "> 0")?;
        if let Some(keep) = self.n_keep.filter(|&k| k >= 0) {
            let context = self.max_context_len.unwrap_or(DEFAULT_CONTEXT);
            let of = if self.max_context_len.is_some() { "max_context_len" } else { "the default max_context_len" };
            check(keep < context, "n_keep", keep, &format!("-1 or below {of}, {context}"))?;
        }
        if let Some(n) = self.enabled_cpus_num {
            check((1..=CORES as i8).contains(&n), "enabled_cpus_num", n, "1..=8")?;
        }
        if let Some(mask) = self.enabled_cpus_mask {
            let cores = "a non-empty mask of cores 0..=7 (0x01..=0xff)";
            check(mask != 0 && mask >> CORES == 0, "enabled_cpus_mask", format!("{mask:#x}"), cores)?;
            if let Some(n) = self.enabled_cpus_num {
                let bits = mask.count_ones();
                let expected = format!("{n} bits set, as enabled_cpus_num says; it has {bits}");
                check(bits == n as u32, "enabled_cpus_mask", format!("{mask:#x}"), &expected)?;
            }
        }
        check_i32(self.base_domain_id, "base_domain_id", |v| v >= 0, ">= 0")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(ModelParams::default().validate().is_ok());
        let cases = [
            ModelParams { top_p: Some(1.5), ..Default::default() },
            ModelParams { temperature: Some(f32::NAN), ..Default::default() },
            ModelParams { top_k: Some(-1), ..Default::default() },
            ModelParams { max_context_len: Some(0), ..Default::default() },
            ModelParams { mirostat: Some(3), ..Default::default() },
            ModelParams { enabled_cpus_num: Some(9), ..Default::default() },
            ModelParams { n_keep: Some(512), ..Default::default() },
            ModelParams { n_keep: Some(100), max_context_len: Some(100), ..Default::default() },
            ModelParams { enabled_cpus_mask: Some(0x100), ..Default::default() },
            ModelParams { enabled_cpus_mask: Some(0), ..Default::default() },
            ModelParams { enabled_cpus_mask: Some(0xf0), enabled_cpus_num: Some(2), ..Default::default() },
        ];
        for bad in cases {
            let err = bad.validate().unwrap_err();
            assert!(err.message().contains("out of range"), "{err}");
        }
        let good = [
            ModelParams { n_keep: Some(511), ..Default::default() },
            ModelParams { n_keep: Some(1000), max_context_len: Some(4096), ..Default::default() },
            ModelParams { n_keep: Some(-1), max_context_len: Some(8), ..Default::default() },
            ModelParams { enabled_cpus_mask: Some(0xf0), enabled_cpus_num: Some(4), ..Default::default() },
            ModelParams { enabled_cpus_mask: Some(0xff), ..Default::default() },
        ];
        for params in good {
            assert!(params.validate().is_ok(), "{params:?}");
        }
    }
}
