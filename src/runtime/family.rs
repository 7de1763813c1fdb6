//! Runtime release families and how they are named.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A runtime release family whose ABI rkl speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    /// Releases 1.2.1 – 1.2.3.
    V1_2,
    /// Release 1.3.0.
    V1_3,
}

impl Family {
    /// Every family, as detection tries them.
    pub(super) const ALL: [Family; 2] = [Family::V1_2, Family::V1_3];

    /// The short name, as accepted by `RKL_RUNTIME_ABI`.
    pub fn name(self) -> &'static str {
        match self {
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

    /// Accepts a family (`1.2`, `1.3`) or a release of it (`1.2.1`..`1.2.3`, `1.3.0`).
    fn from_str(s: &str) -> Result<Family, String> {
        match s.trim() {
            "1.2" | "1.2.1" | "1.2.2" | "1.2.3" => Ok(Family::V1_2),
            "1.3" | "1.3.0" => Ok(Family::V1_3),
            "1.2.0" => Err(
                "runtime release 1.2.0 is not supported (its callback and clear_kv_cache differ); use 1.2.1 or later"
                    .into(),
            ),
            other => Err(format!("unknown runtime ABI '{other}': expected 1.2 or 1.3")),
        }
    }
}
