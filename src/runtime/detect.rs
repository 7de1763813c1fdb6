//! Working out which release family a loaded runtime is, before `rkllm_init`.
//!
//! 1.1 and 1.2.0 are told apart by missing symbols (1.1 is refused; 1.2.0
//! and 1.2.1b1 form their own family); 1.2 and 1.3 have the same symbols and
//! are told apart by the bytes `rkllm_createDefaultParam` writes
//! (see `shared/rkllm-abi.md`, "Probe"), which each layout file judges for
//! its own release. Every signal must agree; otherwise the runtime is refused
//! with a message that says what was seen.

use super::family::Family;
use super::layout;
use super::layout_common::{DefaultParamBytes, ProbeSignals};

/// Which symbols a runtime exports, of those that tell releases apart.
#[derive(Clone, Copy, Debug)]
pub struct Symbols {
    /// `rkllm_clear_kv_cache` and `rkllm_set_chat_template` (from 1.2.0).
    pub has_clear_and_template: bool,
    /// `rkllm_get_kv_cache_size` (from 1.2.1; with it come
    /// `rkllm_set_function_tools` and `rkllm_set_cross_attn_params`).
    pub has_kv_cache_size: bool,
}

/// What the symbol table says: `Ok(Some(V1_2_0))` for 1.2.0 and 1.2.1b1,
/// `Ok(None)` when the probe decides (1.2.1 and later), an error naming
/// the family for older releases.
pub fn family_from_symbols(symbols: Symbols) -> Result<Option<Family>, String> {
    if !symbols.has_clear_and_template {
        return Err("the runtime has no rkllm_clear_kv_cache or rkllm_set_chat_template, so it is of release family \
             1.1 or older, which rkl does not support; use 1.2.0 or later"
            .into());
    }
    Ok((!symbols.has_kv_cache_size).then_some(Family::V1_2_0))
}

/// Combines what the symbols said with the probe: 1.2.0-family runtimes
/// write 1.2.1's default params, so their probe must say 1.2.
pub fn from_symbols_and_probe(by_symbols: Option<Family>, probe: Result<Family, String>) -> Result<Family, String> {
    match (by_symbols, probe) {
        (None, probe) => probe,
        (Some(Family::V1_2_0), Ok(Family::V1_2)) => Ok(Family::V1_2_0),
        (Some(family), Ok(other)) => Err(format!(
            "the runtime's symbols are those of release family {family}, but its default params are {other}'s; \
             refusing a runtime whose release cannot be told"
        )),
        (Some(family), Err(why)) => Err(format!("the runtime's symbols are release family {family}'s, but {why}")),
    }
}

/// The family whose layout the default-param image shows: exactly one
/// layout must recognise the signals; otherwise a description of them.
pub fn family_from_probe(image: &DefaultParamBytes) -> Result<Family, String> {
    let signals = ProbeSignals::read(image);
    let mut found = Family::PROBED.into_iter().filter(|&family| layout::of(family).looks_like(&signals));
    match (found.next(), found.next()) {
        (Some(family), None) => Ok(family),
        _ => Err(format!(
            "rkllm_createDefaultParam wrote a layout rkl does not recognise \
             (u64@64={:#x}, u64@72={:#x}, byte92={}, byte93={}, bytes 74..178 {}); \
             if you know the release, set RKL_RUNTIME_ABI",
            signals.word_64,
            signals.word_72,
            signals.byte_92,
            signals.byte_93,
            if signals.tail_nonzero { "not all zero" } else { "all zero" }
        )),
    }
}

/// Combines the probe with an explicit override. The override wins over an
/// uncertain probe; a certain probe that contradicts it is refused, because
/// speaking the wrong layout corrupts memory.
pub fn decide(probe: Result<Family, String>, requested: Option<Family>) -> Result<Family, String> {
    match (probe, requested) {
        (Ok(found), None) => Ok(found),
        (Err(why), None) => Err(why),
        (Ok(found), Some(asked)) if found == asked => Ok(found),
        (Ok(found), Some(asked)) => Err(format!(
            "the runtime ABI was set to {asked}, but the runtime writes the {found} layout; \
             refusing to speak the wrong layout (fix or unset RKL_RUNTIME_ABI / runtime_abi)"
        )),
        (Err(why), Some(asked)) => {
            log::warn!("release detection was not certain ({why}); using the requested ABI {asked}");
            Ok(asked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(set: &[(usize, &[u8])]) -> DefaultParamBytes {
        let mut img = DefaultParamBytes([0; super::super::layout_common::DEFAULT_PARAM_SLOT]);
        for (at, bytes) in set {
            img.0[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        img
    }

    fn v1_2_image() -> DefaultParamBytes {
        let p1 = 0x7f00_1234_5678u64.to_ne_bytes();
        let p2 = 0x7f00_1234_5690u64.to_ne_bytes();
        let p3 = 0x7f00_1234_56a0u64.to_ne_bytes();
        image(&[(64, &p1), (72, &p2), (80, &p3), (92, &[1, 4])])
    }

    fn v1_3_image() -> DefaultParamBytes {
        image(&[(64, &[1, 4]), (72, &[1])])
    }

    #[test]
    fn recognises_both_layouts() {
        assert_eq!(family_from_probe(&v1_2_image()), Ok(Family::V1_2));
        assert_eq!(family_from_probe(&v1_3_image()), Ok(Family::V1_3));
    }

    #[test]
    fn refuses_mixed_or_empty_signals() {
        assert!(family_from_probe(&image(&[])).is_err());
        // 1.3 head but a non-zero reserved tail.
        let mut img = v1_3_image();
        img.0[150] = 7;
        assert!(family_from_probe(&img).is_err());
        // 1.2 pointers without the extend defaults.
        let mut img = v1_2_image();
        img.0[93] = 0;
        assert!(family_from_probe(&img).is_err());
    }

    #[test]
    fn override_rules() {
        assert_eq!(decide(Ok(Family::V1_3), Some(Family::V1_3)), Ok(Family::V1_3));
        assert!(decide(Ok(Family::V1_3), Some(Family::V1_2)).unwrap_err().contains("writes the 1.3 layout"));
        assert_eq!(decide(Err("odd".into()), Some(Family::V1_2)), Ok(Family::V1_2));
        assert!(decide(Err("odd".into()), None).is_err());
    }

    #[test]
    fn releases_by_symbols() {
        let symbols = |has_clear_and_template, has_kv_cache_size| Symbols { has_clear_and_template, has_kv_cache_size };
        assert!(family_from_symbols(symbols(false, false)).unwrap_err().contains("1.1 or older"));
        assert_eq!(family_from_symbols(symbols(true, false)), Ok(Some(Family::V1_2_0)));
        assert_eq!(family_from_symbols(symbols(true, true)), Ok(None));
        assert_eq!(from_symbols_and_probe(Some(Family::V1_2_0), Ok(Family::V1_2)), Ok(Family::V1_2_0));
        assert!(from_symbols_and_probe(Some(Family::V1_2_0), Ok(Family::V1_3)).is_err());
        assert!(from_symbols_and_probe(Some(Family::V1_2_0), Err("odd".into())).is_err());
        assert_eq!(from_symbols_and_probe(None, Ok(Family::V1_3)), Ok(Family::V1_3));
    }
}
