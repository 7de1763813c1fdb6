//! Cutting a reply into the callbacks of a run, with split characters.

use crate::config::WaitingMode;

/// One generated token: one WAITING or NORMAL callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `None` is a NULL text pointer.
    Waiting(Option<Vec<u8>>),
    Normal(Vec<u8>),
}

/// Bytes of a character that a split moves or reports early: half, at least 1.
fn split_len(c: char) -> usize {
    (c.len_utf8() / 2).max(1)
}

/// The callbacks for `reply` (README "Tokens and split characters"): the k-th
/// token takes `k % 3 + 1` characters; the m-th multi-byte character, when it
/// starts a token, is not split (m % 3 == 0), WAITING-split (1) or
/// NORMAL-split (2).
pub fn pieces(reply: &str, mode: WaitingMode) -> Vec<Piece> {
    let chars: Vec<char> = reply.chars().collect();
    // The number m of each multi-byte character, counted over the whole reply.
    let mut next_multi = 0u64;
    let multi_index: Vec<Option<u64>> = chars
        .iter()
        .map(|c| {
            (c.len_utf8() > 1).then(|| {
                next_multi += 1;
                next_multi - 1
            })
        })
        .collect();

    let mut out: Vec<Piece> = Vec::new();
    let mut waiting_splits = 0u64;
    let mut start = 0;
    let mut k = 0;
    while start < chars.len() {
        let end = (start + k % 3 + 1).min(chars.len());
        let token: String = chars[start..end].iter().collect();
        let bytes = token.into_bytes();
        let first = chars[start];
        match multi_index[start].map(|m| m % 3) {
            Some(1) => {
                waiting_splits += 1;
                let head = bytes[..split_len(first)].to_vec();
                match mode {
                    WaitingMode::Carry => {
                        let tail = bytes[head.len()..].to_vec();
                        out.push(Piece::Waiting(Some(head)));
                        out.push(Piece::Normal(tail));
                    }
                    WaitingMode::Held => {
                        // NULL on odd occurrences, "" on even ones.
                        let text = if waiting_splits % 2 == 1 { None } else { Some(Vec::new()) };
                        out.push(Piece::Waiting(text));
                        out.push(Piece::Normal(bytes));
                    }
                    WaitingMode::Repeat => {
                        out.push(Piece::Waiting(Some(head)));
                        out.push(Piece::Normal(bytes));
                    }
                }
            }
            Some(2) if k > 0 => {
                let cut = split_len(first);
                let previous = out.iter_mut().rev().find_map(|p| match p {
                    Piece::Normal(text) => Some(text),
                    Piece::Waiting(_) => None,
                });
                // Every earlier token pushed a NORMAL piece, so one exists.
                if let Some(previous) = previous {
                    previous.extend_from_slice(&bytes[..cut]);
                    out.push(Piece::Normal(bytes[cut..].to_vec()));
                } else {
                    out.push(Piece::Normal(bytes));
                }
            }
            _ => out.push(Piece::Normal(bytes)),
        }
        start = end;
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [WaitingMode; 3] = [WaitingMode::Carry, WaitingMode::Held, WaitingMode::Repeat];

    /// Rebuilds the reply by the README's rule: NORMAL texts, plus for carry
    /// the WAITING bytes.
    fn rebuild(pieces: &[Piece], mode: WaitingMode) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Normal(t) => out.extend_from_slice(t),
                Piece::Waiting(Some(t)) if mode == WaitingMode::Carry => out.extend_from_slice(t),
                Piece::Waiting(_) => {}
            }
        }
        out
    }

    /// Rebuilds the reply by the rule in rkllm-abi.md that handles all three
    /// modes: WAITING bytes are prepended to the next NORMAL only when that
    /// NORMAL starts with a continuation byte.
    fn rebuild_blind(pieces: &[Piece]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut held: Vec<u8> = Vec::new();
        for p in pieces {
            match p {
                Piece::Waiting(t) => held = t.clone().unwrap_or_default(),
                Piece::Normal(t) => {
                    if t.first().is_some_and(|b| (0x80..0xC0).contains(b)) {
                        out.append(&mut held);
                    }
                    held.clear();
                    out.extend_from_slice(t);
                }
            }
        }
        out
    }

    fn is_char_boundary_split(piece: &[u8]) -> bool {
        std::str::from_utf8(piece).is_err()
    }

    const MIXED: &str = "Hi é中文🎉 ok, café 中文中文 🎉🎉 x€y—z ñ 日本語 🚀end";

    #[test]
    fn concatenation_gives_the_reply_in_every_mode() {
        for mode in MODES {
            let p = pieces(MIXED, mode);
            assert_eq!(rebuild(&p, mode), MIXED.as_bytes(), "{mode:?}");
            assert_eq!(rebuild_blind(&p), MIXED.as_bytes(), "{mode:?}");
        }
    }

    #[test]
    fn both_kinds_of_split_happen() {
        for mode in MODES {
            let p = pieces(MIXED, mode);
            let waits = p.iter().filter(|x| matches!(x, Piece::Waiting(_))).count();
            assert!(waits >= 2, "{mode:?}: {waits} WAITING splits");
            // A NORMAL split leaves a NORMAL that ends inside a character
            // and is not followed by a WAITING.
            let normal_splits = p
                .windows(2)
                .filter(|w| matches!((&w[0], &w[1]), (Piece::Normal(a), Piece::Normal(_)) if is_char_boundary_split(a)))
                .count();
            assert!(normal_splits >= 1, "{mode:?}: no NORMAL split in {p:?}");
        }
    }

    #[test]
    fn token_sizes_cycle_one_two_three() {
        let p = pieces("abcdefghij", WaitingMode::Carry);
        let texts: Vec<&[u8]> = p
            .iter()
            .map(|x| match x {
                Piece::Normal(t) => t.as_slice(),
                Piece::Waiting(_) => unreachable!(),
            })
            .collect();
        assert_eq!(texts, [&b"a"[..], b"bc", b"def", b"g", b"hi", b"j"]);
    }

    #[test]
    fn exact_pieces_for_a_small_reply() {
        // Tokens: "é" (m0, no split) | "a中" (starts with 'a': 中, m1, is
        // not split) | "文b🎉" (文 is m2: NORMAL split) | "x".
        let p = pieces("éa中文b🎉x", WaitingMode::Carry);
        assert_eq!(
            p,
            vec![
                Piece::Normal("é".into()),
                Piece::Normal([&b"a"[..], "中".as_bytes(), &"文".as_bytes()[..1]].concat()),
                Piece::Normal([&"文".as_bytes()[1..], b"b", "🎉".as_bytes()].concat()),
                Piece::Normal(b"x".to_vec()),
            ]
        );
        // Tokens "é" | "中文": token 1 starts with 中 (m1): WAITING split.
        let word = "é中文";
        let carry = pieces(word, WaitingMode::Carry);
        assert_eq!(
            carry,
            vec![
                Piece::Normal("é".into()),
                Piece::Waiting(Some("中".as_bytes()[..1].to_vec())),
                Piece::Normal([&"中".as_bytes()[1..], "文".as_bytes()].concat()),
            ]
        );
        let repeat = pieces(word, WaitingMode::Repeat);
        assert_eq!(repeat[1], Piece::Waiting(Some("中".as_bytes()[..1].to_vec())));
        assert_eq!(repeat[2], Piece::Normal("中文".into()));
        let held = pieces(word, WaitingMode::Held);
        assert_eq!(held[1], Piece::Waiting(None));
        assert_eq!(held[2], Piece::Normal("中文".into()));
    }

    #[test]
    fn held_alternates_null_and_empty() {
        let p = pieces(MIXED, WaitingMode::Held);
        let waits: Vec<&Option<Vec<u8>>> = p
            .iter()
            .filter_map(|x| match x {
                Piece::Waiting(t) => Some(t),
                Piece::Normal(_) => None,
            })
            .collect();
        assert!(waits.len() >= 2);
        for (i, w) in waits.iter().enumerate() {
            let expected = if i % 2 == 0 { None } else { Some(Vec::new()) };
            assert_eq!(**w, expected, "occurrence {}", i + 1);
        }
    }

    #[test]
    fn counts_per_mode() {
        // Every mode has the same number of callbacks: one per token plus one
        // per WAITING split.
        let counts: Vec<usize> = MODES.iter().map(|m| pieces(MIXED, *m).len()).collect();
        assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
        let chars = MIXED.chars().count();
        let tokens = (0..).scan(0usize, |done, k| {
            (*done < chars).then(|| {
                *done += k % 3 + 1;
            })
        });
        let token_count = tokens.count();
        let waits = pieces(MIXED, WaitingMode::Carry).iter().filter(|p| matches!(p, Piece::Waiting(_))).count();
        assert_eq!(counts[0], token_count + waits);
    }

    #[test]
    fn a_first_token_is_never_normal_split_and_empty_replies_have_no_tokens() {
        assert!(pieces("", WaitingMode::Carry).is_empty());
        // 'é' is m0 in both, so no split can come from it; a lone emoji too.
        assert_eq!(pieces("🎉", WaitingMode::Repeat), vec![Piece::Normal("🎉".into())]);
        // 4-byte characters move 2 bytes.
        let p = pieces("ab🎉🎉c🎉", WaitingMode::Carry);
        assert_eq!(rebuild(&p, WaitingMode::Carry), "ab🎉🎉c🎉".as_bytes());
    }
}
