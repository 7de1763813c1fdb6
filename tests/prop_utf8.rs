//! Property tests of the UTF-8 reassembler (`rkl::utf8::Reassembler`).
//!
//! 1. Any valid text, cut into tokens at any byte positions (NORMAL splits
//!    inside characters included), with WAITING splits reported in each of
//!    the three ways a runtime may report them (carry, held, repeat; see
//!    `src/utf8.rs` and `shared/rkllm-abi.md`), comes out exactly as it went
//!    in, whole characters only, each as soon as it is complete.
//! 2. Any sequence of NORMAL and WAITING texts of arbitrary bytes comes out
//!    as the lossy decoding of the byte stream the WAITING rule defines: no
//!    invalid byte escapes, every invalid sequence is one U+FFFD and counted,
//!    a trailing incomplete character is dropped and counted, and valid
//!    input never yields a U+FFFD it did not contain.
//! 3. Over the real path: random prompts, multi-byte included, through the
//!    simulator in each waiting mode (and with callbacks on a foreign
//!    thread) give exactly the expected reply, by callback and by stream.
//!
//! Case counts scale with `RKL_HARDENING_SCALE` (see `scale`); a failure prints the
//! smallest case proptest found (add it below as a regression test).

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rkl::utf8::Reassembler;
use rkl::{FinishReason, GenerateRequest, Model};
use std::ops::ControlFlow;

/// How a runtime reports the text of a WAITING callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// WAITING holds the first bytes; the next NORMAL the rest.
    Carry,
    /// WAITING holds nothing (NULL or ""); the next NORMAL the whole token.
    Held,
    /// WAITING holds the first bytes; the next NORMAL repeats the whole token.
    Repeat,
}

const MODES: [Waiting; 3] = [Waiting::Carry, Waiting::Held, Waiting::Repeat];

/// One callback as the runtime makes it.
#[derive(Clone, Debug, PartialEq)]
enum Event {
    Waiting(Option<Vec<u8>>),
    Normal(Option<Vec<u8>>),
}

fn is_continuation(b: u8) -> bool {
    (0x80..=0xBF).contains(&b)
}

/// Characters of every encoded length, weighted towards the multi-byte ones.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        2 => proptest::char::range(' ', '~'),
        2 => proptest::char::range('\u{80}', '\u{7FF}'),
        2 => proptest::char::range('\u{800}', '\u{FFFF}'),
        2 => proptest::char::range('\u{10000}', '\u{10FFFF}'),
        1 => any::<char>(),
        1 => Just('\u{FFFD}'),
    ]
}

fn any_text(max_chars: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any_char(), 0..max_chars).prop_map(|c| c.into_iter().collect())
}

/// Choices that turn a text into callbacks; indices are reduced modulo
/// what they choose from, so any value is meaningful for any text.
#[derive(Clone, Debug)]
struct Plan {
    /// Token boundaries (byte offsets, reduced into 1..len).
    cuts: Vec<usize>,
    /// Per token: whether it gets a WAITING split, where (an index into its
    /// continuation bytes), how many WAITING callbacks, and seeds for their
    /// texts.
    splits: Vec<(bool, usize, usize, u64)>,
}

fn any_plan() -> impl Strategy<Value = Plan> {
    (
        proptest::collection::vec(any::<usize>(), 0..64),
        proptest::collection::vec((any::<bool>(), any::<usize>(), 1usize..4, any::<u64>()), 64),
    )
        .prop_map(|(cuts, splits)| Plan { cuts, splits })
}

/// The callbacks a runtime in `mode` makes for `text` cut as `plan` says.
/// Returns them with, for each NORMAL, the byte offset of `text` it
/// completes (for checking that characters come out as soon as possible).
fn deliver(text: &str, plan: &Plan, mode: Waiting) -> Vec<(Event, Option<usize>)> {
    let bytes = text.as_bytes();
    let mut cuts: Vec<usize> =
        if bytes.len() > 1 { plan.cuts.iter().map(|c| 1 + c % (bytes.len() - 1)).collect() } else { vec![] };
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut events = Vec::new();
    for (k, pair) in cuts.windows(2).enumerate() {
        let (s, e) = (pair[0], pair[1]);
        let token = &bytes[s..e];
        let (split, at, count, seed) = plan.splits[k % plan.splits.len()];
        // WAITING splits only where a character is incomplete: `w` is a
        // continuation byte inside the token. held and repeat resend the
        // whole token, which then must start on a character (as a runtime
        // that repeats the character does); carry may start anywhere.
        let inner: Vec<usize> = (s + 1..e).filter(|&i| is_continuation(bytes[i])).collect();
        let starts_on_char = text.is_char_boundary(s);
        if split && !inner.is_empty() && (mode == Waiting::Carry || starts_on_char) {
            let w = inner[at % inner.len()];
            let mut rng = seed;
            let mut next = move || {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (rng >> 33) as usize
            };
            match mode {
                Waiting::Carry => {
                    // bytes[s..w] spread over `count` WAITING callbacks
                    // (some possibly empty).
                    let mut marks: Vec<usize> = (1..count).map(|_| s + next() % (w - s + 1)).collect();
                    marks.push(s);
                    marks.push(w);
                    marks.sort_unstable();
                    for m in marks.windows(2) {
                        events.push((Event::Waiting(Some(bytes[m[0]..m[1]].to_vec())), None));
                    }
                    events.push((Event::Normal(Some(bytes[w..e].to_vec())), Some(e)));
                }
                Waiting::Held => {
                    for _ in 0..count {
                        let t = if next() % 2 == 0 { None } else { Some(Vec::new()) };
                        events.push((Event::Waiting(t), None));
                    }
                    events.push((Event::Normal(Some(token.to_vec())), Some(e)));
                }
                Waiting::Repeat => {
                    for _ in 0..count {
                        let x = s + 1 + next() % (w - s);
                        events.push((Event::Waiting(Some(bytes[s..x].to_vec())), None));
                    }
                    events.push((Event::Normal(Some(token.to_vec())), Some(e)));
                }
            }
        } else {
            events.push((Event::Normal(Some(token.to_vec())), Some(e)));
        }
    }
    events
}

fn feed(events: &[Event]) -> (String, usize, usize) {
    let mut r = Reassembler::new();
    let mut out = String::new();
    for event in events {
        match event {
            Event::Waiting(t) => r.waiting(t.as_deref()),
            Event::Normal(t) => r.normal(t.as_deref(), &mut out),
        }
    }
    let replaced = r.replaced();
    (out, replaced, r.finish())
}

/// The largest character boundary of `text` at or below `at`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn check_valid_text(text: &str, plan: &Plan, mode: Waiting) -> Result<(), TestCaseError> {
    let events = deliver(text, plan, mode);
    let mut r = Reassembler::new();
    let mut out = String::new();
    for (event, completes) in &events {
        match event {
            Event::Waiting(t) => r.waiting(t.as_deref()),
            Event::Normal(t) => {
                r.normal(t.as_deref(), &mut out);
                let upto = floor_boundary(text, completes.expect("NORMAL events complete an offset"));
                prop_assert_eq!(&out, &text[..upto], "{:?}: each complete character as soon as it is whole", mode);
            }
        }
    }
    prop_assert_eq!(&out, text, "{:?}", mode);
    prop_assert_eq!(r.replaced(), 0, "valid text never yields a U+FFFD");
    prop_assert_eq!(r.finish(), 0, "nothing is left over");
    Ok(())
}

fn config(cases: u32) -> Config {
    let cases = ((cases as f64 * scale()) as u32).max(1);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Runs a property and reports how many cases passed.
fn check<S: Strategy>(what: &str, cases: u32, strategy: &S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let config = config(cases);
    let n = config.cases;
    let started = std::time::Instant::now();
    TestRunner::new(config).run(strategy, test).unwrap();
    report(&format!("prop_utf8: {what}: {n} cases passed in {:.1} s", started.elapsed().as_secs_f64()));
}

#[test]
fn any_split_of_any_valid_text_in_every_waiting_mode_gives_the_text() {
    check("valid text, any split, carry/held/repeat", 1000, &(any_text(48), any_plan()), |(text, plan)| {
        for mode in MODES {
            check_valid_text(&text, &plan, mode)?;
        }
        Ok(())
    });
}

#[test]
fn valid_text_cut_at_every_byte_gives_the_text() {
    // The worst case for NORMAL splits: one byte per token, and one WAITING
    // per continuation byte in carry mode.
    let text = "a€𐍈é\u{FFFD}z中🎉";
    let bytes = text.as_bytes();
    let plan = Plan { cuts: (0..bytes.len()).collect(), splits: vec![(true, 0, 1, 0)] };
    for mode in MODES {
        check_valid_text(text, &plan, mode).unwrap();
    }
    let mut events = Vec::new();
    for &b in bytes {
        if is_continuation(b) {
            events.push(Event::Normal(Some(vec![b])));
        } else {
            events.push(Event::Waiting(Some(vec![b])));
            events.push(Event::Normal(Some(vec![b])));
        }
    }
    assert_eq!(feed(&events), (text.to_string(), 0, 0), "repeat with one-byte NORMAL splits after it");
}

/// The byte stream the WAITING rule defines, written independently of the
/// implementation: WAITING bytes are kept aside and prepended to the next
/// NORMAL only when it starts with a continuation byte. Also returns the
/// WAITING bytes still aside at the end.
fn effective_stream(events: &[Event]) -> (Vec<u8>, usize) {
    let mut stream = Vec::new();
    let mut aside = Vec::new();
    for event in events {
        match event {
            Event::Waiting(t) => aside.extend_from_slice(t.as_deref().unwrap_or_default()),
            Event::Normal(t) => {
                let t = t.as_deref().unwrap_or_default();
                if t.first().is_some_and(|&b| is_continuation(b)) {
                    stream.append(&mut aside);
                } else {
                    aside.clear();
                }
                stream.extend_from_slice(t);
            }
        }
    }
    (stream, aside.len())
}

/// What decoding `stream` must give: (text, U+FFFD inserted, bytes of a
/// trailing incomplete character).
fn reference_decode(stream: &[u8]) -> (String, usize, usize) {
    let mut out = String::new();
    let mut replaced = 0;
    let mut tail = 0;
    let mut chunks = stream.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let bad = chunk.invalid();
        if bad.is_empty() {
            continue;
        }
        let last = chunks.peek().is_none();
        let incomplete = std::str::from_utf8(bad).err().is_some_and(|e| e.error_len().is_none());
        if last && incomplete {
            tail = bad.len();
        } else {
            out.push('\u{FFFD}');
            replaced += 1;
        }
    }
    (out, replaced, tail)
}

/// Bytes that make interesting streams: anything, and the parts of UTF-8
/// (drawn from one u16 each: cheaper to generate than a union of ranges).
fn shape_byte(v: u16) -> u8 {
    let b = v as u8;
    match v >> 8 & 7 {
        0 | 1 => b,
        2 | 3 => 0x80 | (b & 0x3F),
        4 => 0xC0 | b,
        5 | 6 => 0x20 + b % 0x5F,
        _ => 0xEF,
    }
}

fn any_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        8 => proptest::collection::vec(any::<u16>(), 0..8).prop_map(|v| Some(v.into_iter().map(shape_byte).collect())),
        2 => any_text(3).prop_map(|t| Some(t.into_bytes())),
    ]
}

fn any_events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(
        prop_oneof![
            1 => any_bytes().prop_map(Event::Waiting),
            3 => any_bytes().prop_map(Event::Normal),
        ],
        0..40,
    )
}

#[test]
fn arbitrary_bytes_never_escape_as_invalid_text() {
    check("arbitrary bytes and WAITING/NORMAL sequences", 1500, &any_events(), |events| {
        let (out, replaced, dropped) = feed(&events);
        let (stream, aside) = effective_stream(&events);
        let (want, want_replaced, tail) = reference_decode(&stream);
        prop_assert_eq!(&out, &want);
        prop_assert_eq!(replaced, want_replaced);
        prop_assert_eq!(dropped, tail + aside, "dropped = the incomplete tail + WAITING bytes never used");
        // What a String already guarantees, stated for the record: the
        // output is valid UTF-8, and U+FFFD appears only where the input
        // had it or had invalid bytes.
        prop_assert!(std::str::from_utf8(out.as_bytes()).is_ok());
        let literal =
            String::from_utf8_lossy(&stream).matches('\u{FFFD}').count() - want_replaced - usize::from(tail > 0);
        prop_assert_eq!(out.matches('\u{FFFD}').count(), literal + replaced);
        if std::str::from_utf8(&stream).is_ok() {
            prop_assert_eq!(replaced, 0);
            prop_assert_eq!(out.as_bytes(), &stream[..]);
        }
        Ok(())
    });
}

#[test]
fn regressions_for_the_rule() {
    // A WAITING fragment followed by a NORMAL that starts a new character:
    // the fragment is dropped (held/repeat), never decoded as garbage.
    let e = "é".as_bytes();
    let events = [Event::Waiting(Some(e[..1].to_vec())), Event::Normal(Some(b"x".to_vec()))];
    assert_eq!(feed(&events), ("x".to_string(), 0, 0));
    // WAITING bytes left at the end are counted as dropped.
    let events = [Event::Normal(Some(b"a".to_vec())), Event::Waiting(Some(e[..1].to_vec()))];
    assert_eq!(feed(&events), ("a".to_string(), 0, 1));
    // An invalid lead byte carried by WAITING into a continuation NORMAL is
    // replaced, once.
    let events = [Event::Waiting(Some(vec![0xFF])), Event::Normal(Some(vec![0x80, b'a']))];
    assert_eq!(feed(&events), ("\u{FFFD}\u{FFFD}a".to_string(), 2, 0));
    // Surrogate encodings and overlong forms are invalid, not passed on.
    assert_eq!(feed(&[Event::Normal(Some(vec![0xED, 0xA0, 0x80]))]).1, 3);
    assert_eq!(feed(&[Event::Normal(Some(vec![0xC0, 0xAF]))]).1, 2);
    assert!(feed(&[Event::Normal(Some(vec![0xF4, 0x90, 0x80, 0x80]))]).0.chars().all(|c| c == '\u{FFFD}'));
}

// ------------------------------------------------------------ the real path

const TEMPLATE: &str = "«{prompt}» Café crème, naïve — 你好 🎉🚀 Ω≈ç√ [{prompt}] end";

fn collect(model: &Model, prompt: &str, by_stream: bool) -> rkl::Result<(String, FinishReason)> {
    let request = GenerateRequest::new(prompt);
    if by_stream {
        let mut stream = model.stream(&request)?;
        let mut text = String::new();
        for chunk in &mut stream {
            text.push_str(&chunk?);
        }
        Ok((text, stream.stats().expect("finished").finish))
    } else {
        let mut text = String::new();
        let stats = model.generate(&request, |chunk| {
            assert!(!chunk.is_empty(), "no empty chunks");
            text.push_str(chunk);
            ControlFlow::Continue(())
        })?;
        Ok((text, stats.finish))
    }
}

fn any_prompt() -> impl Strategy<Value = String> {
    proptest::collection::vec(any_char().prop_filter("no NUL in a prompt", |&c| c != '\0'), 0..40)
        .prop_map(|c| c.into_iter().collect())
}

#[test]
fn random_prompts_through_the_simulator_give_the_exact_reply_in_every_mode() {
    let variants = [
        ("carry", "caller"),
        ("held", "caller"),
        ("repeat", "caller"),
        ("carry", "foreign"),
        ("held", "foreign"),
        ("repeat", "foreign"),
    ];
    let models: Vec<(String, Model)> = variants
        .iter()
        .map(|(mode, thread)| {
            let m = open(
                "prop-utf8",
                &[&format!("reply = {TEMPLATE}"), &format!("waiting = {mode}"), &format!("callback_thread = {thread}")],
            );
            (format!("waiting = {mode}, callbacks on the {thread} thread"), m)
        })
        .collect();
    check(
        "random prompts through the simulator, 6 waiting/thread modes",
        64,
        &(any_prompt(), any::<bool>()),
        |(prompt, by_stream)| {
            let want = TEMPLATE.replace("{prompt}", &prompt);
            for (what, model) in &models {
                let (text, finish) =
                    collect(model, &prompt, by_stream).map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                prop_assert_eq!(&text, &want, "{} (stream: {})", what, by_stream);
                prop_assert_eq!(finish, FinishReason::End);
            }
            Ok(())
        },
    );
    assert_eq!(sim_stats(&sim_library(""))[0], 0, "no two calls inside the runtime at once");
}
