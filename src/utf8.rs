//! Turns the runtime's token texts into whole UTF-8 characters.
//!
//! The runtime reports a character split over tokens with WAITING callbacks,
//! and what those carry is undocumented (see `shared/rkllm-abi.md`): the first
//! bytes (*carry*), nothing (*held*), or the first bytes again repeated by the
//! next NORMAL (*repeat*). It may also end a NORMAL text in the middle of a
//! character. The rule that gives the same text in every case: keep WAITING
//! bytes aside; on the next NORMAL, prepend them only if it starts with a
//! continuation byte; then hand out only complete characters.

/// Reassembles token texts into complete UTF-8.
#[derive(Default, Debug)]
pub struct Reassembler {
    waiting: Vec<u8>,
    pending: Vec<u8>,
    replaced: usize,
}

fn is_continuation(byte: u8) -> bool {
    (0x80..=0xBF).contains(&byte)
}

impl Reassembler {
    /// A fresh reassembler.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// A WAITING token's text (`None` when the runtime passed NULL).
    pub fn waiting(&mut self, text: Option<&[u8]>) {
        if let Some(bytes) = text {
            self.waiting.extend_from_slice(bytes);
        }
    }

    /// A NORMAL token's text; appends the complete characters now available
    /// to `out`.
    pub fn normal(&mut self, text: Option<&[u8]>, out: &mut String) {
        let bytes = text.unwrap_or_default();
        if bytes.first().is_some_and(|&b| is_continuation(b)) {
            self.pending.append(&mut self.waiting);
        } else {
            self.waiting.clear();
        }
        self.pending.extend_from_slice(bytes);
        self.drain_complete(out);
    }

    /// Ends the text: bytes of a character that never completed are dropped
    /// (a run stopped mid-character). Returns how many were dropped.
    pub fn finish(&mut self) -> usize {
        let dropped = self.pending.len() + self.waiting.len();
        self.pending.clear();
        self.waiting.clear();
        dropped
    }

    /// How many invalid sequences were replaced by U+FFFD so far.
    pub fn replaced(&self) -> usize {
        self.replaced
    }

    fn drain_complete(&mut self, out: &mut String) {
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    out.push_str(valid);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid_end = start + e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[start..valid_end]).expect("valid prefix"));
                    match e.error_len() {
                        // Incomplete at the end: keep it for the next token.
                        None => {
                            start = valid_end;
                            break;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.replaced += 1;
                            start = valid_end + bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (waiting?, text) events and collects the output.
    fn feed(events: &[(bool, Option<&[u8]>)]) -> String {
        let mut r = Reassembler::new();
        let mut out = String::new();
        for (waiting, text) in events {
            if *waiting {
                r.waiting(*text);
            } else {
                r.normal(*text, &mut out);
            }
        }
        r.finish();
        out
    }

    #[test]
    fn the_three_waiting_behaviours_give_the_same_text() {
        let e = "é".as_bytes(); // C3 A9
        let carry = feed(&[(false, Some(b"caf")), (true, Some(&e[..1])), (false, Some(&e[1..])), (false, Some(b"!"))]);
        let held = feed(&[(false, Some(b"caf")), (true, None), (false, Some("é".as_bytes())), (false, Some(b"!"))]);
        let held_empty = feed(&[(false, Some(b"caf")), (true, Some(b"")), (false, Some("é!".as_bytes()))]);
        let repeat =
            feed(&[(false, Some(b"caf")), (true, Some(&e[..1])), (false, Some("é".as_bytes())), (false, Some(b"!"))]);
        for got in [carry, held, held_empty, repeat] {
            assert_eq!(got, "café!");
        }
    }

    #[test]
    fn a_character_split_inside_normal_texts_is_joined() {
        let emoji = "🎉".as_bytes();
        let got = feed(&[(false, Some(&[b"a", &emoji[..2]].concat())), (false, Some(&[&emoji[2..], b"b"].concat()))]);
        assert_eq!(got, "a🎉b");
    }

    #[test]
    fn only_complete_characters_are_handed_out() {
        let mut r = Reassembler::new();
        let mut out = String::new();
        r.normal(Some(&"中".as_bytes()[..2]), &mut out);
        assert_eq!(out, "");
        r.normal(Some(&"中".as_bytes()[2..]), &mut out);
        assert_eq!(out, "中");
    }

    #[test]
    fn invalid_bytes_are_replaced_and_a_trailing_fragment_dropped() {
        let mut r = Reassembler::new();
        let mut out = String::new();
        r.normal(Some(b"a\xffb\xe4\xb8"), &mut out);
        assert_eq!(out, "a\u{fffd}b");
        assert_eq!(r.replaced(), 1);
        assert_eq!(r.finish(), 2);
    }
}
