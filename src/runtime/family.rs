//! Runtime release families and how they are named.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A runtime release family whose ABI rkl speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    /// Releases 1.2.0 and 1.2.1b1 (told apart by the version they print).
    V1_2_0,
    /// Releases 1.2.1 – 1.2.3.
    V1_2,
    /// Release 1.3.0.
    V1_3,
}

impl Family {
    /// The families the default-param probe tells apart (1.2.0's params
    /// are 1.2.1's: its symbols tell it, see `detect.rs`).
    pub(super) const PROBED: [Family; 2] = [Family::V1_2, Family::V1_3];

    /// The short name, as accepted by `RKL_RUNTIME_ABI`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V1_2_0 => "1.2.0",
            Family::V1_2 => "1.2",
            Family::V1_3 => "1.3",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = String;

    /// Accepts a family (`1.2.0`, `1.2`, `1.3`) or a release of it
    /// (`1.2.1b1`, `1.2.1`..`1.2.3`, `1.3.0`).
    fn from_str(s: &str) -> Result<Family, String> {
        match s.trim() {
            "1.2.0" | "1.2.1b1" => Ok(Family::V1_2_0),
            "1.2" | "1.2.1" | "1.2.2" | "1.2.3" => Ok(Family::V1_2),
            "1.3" | "1.3.0" => Ok(Family::V1_3),
            old if old.starts_with("1.1") || old.starts_with("1.0") => {
                Err(format!("runtime release {old} (family 1.1 or older) is not supported; use 1.2.0 or later"))
            }
            other => Err(format!("unknown runtime ABI '{other}': expected 1.2.0, 1.2 or 1.3")),
        }
    }
}
