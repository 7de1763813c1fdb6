//! The process-wide choices read from the environment, once, at the first call.

use std::sync::OnceLock;

/// The runtime release being imitated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    V1_2,
    V1_3,
}

impl Abi {
    /// The version string printed at init.
    pub fn version(self) -> &'static str {
        match self {
            Abi::V1_2 => "1.2.3",
            Abi::V1_3 => "1.3.0",
        }
    }
}

/// The release imitated by the `family-1-2-0` build (`RKLLM_SIM_RELEASE`,
/// model key `release`): 1.2.0 or 1.2.1b1, which only their version line and
/// multimodal struct tell apart; `Silent` prints no version line and reads
/// 1.2.1b1's struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldRelease {
    V1_2_0,
    V1_2_1b1,
    Silent,
}

impl OldRelease {
    pub fn parse(text: &str) -> Option<OldRelease> {
        match text {
            "1.2.0" => Some(OldRelease::V1_2_0),
            "1.2.1b1" => Some(OldRelease::V1_2_1b1),
            "silent" => Some(OldRelease::Silent),
            _ => None,
        }
    }

    /// The version printed at init (`None`: no line).
    pub fn version(self) -> Option<&'static str> {
        match self {
            OldRelease::V1_2_0 => Some("1.2.0"),
            OldRelease::V1_2_1b1 => Some("1.2.1b1"),
            OldRelease::Silent => None,
        }
    }
}

/// Whether this is the `family-1-2-0` build (1.2.0 / 1.2.1b1 ABI).
pub const OLD_FAMILY: bool = cfg!(feature = "family-1-2-0");

/// What a WAITING callback and the NORMAL after it carry (see README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingMode {
    Carry,
    Held,
    Repeat,
}

impl WaitingMode {
    pub fn parse(text: &str) -> Option<WaitingMode> {
        match text {
            "carry" => Some(WaitingMode::Carry),
            "held" => Some(WaitingMode::Held),
            "repeat" => Some(WaitingMode::Repeat),
            _ => None,
        }
    }
}

/// Parses a time scale: a finite number >= 0.
pub fn parse_time_scale(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// Settings from `RKLLM_SIM_ABI`, `RKLLM_SIM_TIME_SCALE`, `RKLLM_SIM_WAITING`
/// and (family-1-2-0 build only) `RKLLM_SIM_RELEASE`.
#[derive(Clone, Copy, Debug)]
pub struct EnvConfig {
    pub abi: Abi,
    pub time_scale: f64,
    pub waiting: WaitingMode,
    /// `Some` only in the family-1-2-0 build.
    pub old_release: Option<OldRelease>,
}

/// The environment settings; read on the first call and kept for the process.
pub fn env() -> &'static EnvConfig {
    static ENV: OnceLock<EnvConfig> = OnceLock::new();
    ENV.get_or_init(read_env)
}

fn read_env() -> EnvConfig {
    // An unusable value is reported and replaced by the default, so a typo is
    // visible in the test output instead of silently changing the release.
    let abi = match std::env::var("RKLLM_SIM_ABI").as_deref() {
        // The family-1-2-0 build has 1.2's RKLLMParam whatever is asked.
        _ if OLD_FAMILY => Abi::V1_2,
        Err(_) | Ok("1.3") => Abi::V1_3,
        Ok("1.2") => Abi::V1_2,
        Ok(other) => {
            eprintln!("E rkllm-sim: RKLLM_SIM_ABI={other:?} is not 1.2 or 1.3; imitating 1.3");
            Abi::V1_3
        }
    };
    let old_release = match std::env::var("RKLLM_SIM_RELEASE") {
        _ if !OLD_FAMILY => None,
        Err(_) => Some(OldRelease::V1_2_0),
        Ok(text) => Some(OldRelease::parse(&text).unwrap_or_else(|| {
            eprintln!("E rkllm-sim: RKLLM_SIM_RELEASE={text:?} is not 1.2.0, 1.2.1b1 or silent; using 1.2.0");
            OldRelease::V1_2_0
        })),
    };
    let time_scale = match std::env::var("RKLLM_SIM_TIME_SCALE") {
        Err(_) => 1.0,
        Ok(text) => parse_time_scale(&text).unwrap_or_else(|| {
            eprintln!("E rkllm-sim: RKLLM_SIM_TIME_SCALE={text:?} is not a number >= 0; using 1");
            1.0
        }),
    };
    let waiting = match std::env::var("RKLLM_SIM_WAITING") {
        Err(_) => WaitingMode::Carry,
        Ok(text) => WaitingMode::parse(&text).unwrap_or_else(|| {
            eprintln!("E rkllm-sim: RKLLM_SIM_WAITING={text:?} is not carry, held or repeat; using carry");
            WaitingMode::Carry
        }),
    };
    EnvConfig { abi, time_scale, waiting, old_release }
}
