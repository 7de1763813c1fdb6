//! Which layout file speaks a release family: the one `match` on [`Family`]
//! that picks per-release code. A new family is a new layout file and an arm
//! here (see `README.md` in this folder).

use super::family::Family;
use super::layout_common::Layout;
use super::{layout_v1_2, layout_v1_2_0, layout_v1_3};

/// The layout of `family`.
pub fn of(family: Family) -> &'static dyn Layout {
    match family {
        Family::V1_2_0 => &layout_v1_2_0::V1_2_0,
        Family::V1_2 => &layout_v1_2::V1_2,
        Family::V1_3 => &layout_v1_3::V1_3,
    }
}
