//! The reply text of a run and the prompt's token count.

/// Values for the reply template's placeholders.
#[derive(Clone, Debug, Default)]
pub struct ReplyContext<'a> {
    pub prompt: &'a str,
    pub turn: u64,
    pub role: &'a str,
    pub system: &'a str,
    pub tools: &'a str,
    pub lora: &'a str,
    pub enable_thinking: bool,
    /// The run's own sampling parameters (1.3), or "init".
    pub sampling: &'a str,
    /// `{input}`: what kind of input the run got (`Payload::describe`).
    pub input: &'a str,
    /// `{prefill}`: this run's prefill token count.
    pub prefill: u64,
    /// `{tokenizer}`: `builtin` or what the tokenizer callback returned.
    pub tokenizer: &'a str,
    /// `{embed}`: `builtin` or what the embedding callback wrote.
    pub embed: &'a str,
    /// `{cross_attn}`: `none` or the cross-attention parameters.
    pub cross_attn: &'a str,
}

/// The `{sampling}` text of per-run sampling parameters.
pub fn describe_sampling(s: &crate::abi::SamplingParam) -> String {
    format!(
        "top_k={} top_p={} temperature={} repeat_penalty={} frequency_penalty={} presence_penalty={} mirostat={} mirostat_tau={} mirostat_eta={}",
        s.top_k, s.top_p, s.temperature, s.repeat_penalty, s.frequency_penalty, s.presence_penalty, s.mirostat,
        s.mirostat_tau, s.mirostat_eta
    )
}

/// What `enable_thinking` puts in front of the reply.
pub const THINKING_PREFIX: &str = "<think>sim</think>";

/// Expands the template in one left-to-right pass: a substituted value is
/// never scanned again, and an unknown `{name}` stays as written.
pub fn expand(template: &str, ctx: &ReplyContext) -> String {
    let turn = ctx.turn.to_string();
    let prefill = ctx.prefill.to_string();
    let mut out = String::with_capacity(template.len() + ctx.prompt.len() + THINKING_PREFIX.len());
    if ctx.enable_thinking {
        out.push_str(THINKING_PREFIX);
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let value = [
            ("{prompt}", ctx.prompt),
            ("{turn}", turn.as_str()),
            ("{role}", ctx.role),
            ("{system}", ctx.system),
            ("{tools}", ctx.tools),
            ("{lora}", ctx.lora),
            ("{sampling}", ctx.sampling),
            ("{input}", ctx.input),
            ("{prefill}", prefill.as_str()),
            ("{tokenizer}", ctx.tokenizer),
            ("{embed}", ctx.embed),
            ("{cross_attn}", ctx.cross_attn),
        ]
        .into_iter()
        .find(|(name, _)| after.starts_with(name));
        match value {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text that is prefilled for a prompt: the system prompt only when the
/// KV history is empty, then prefix, prompt, postfix.
pub fn prefilled_text(history_empty: bool, system: &str, prefix: &str, prompt: &str, postfix: &str) -> String {
    let system = if history_empty { system } else { "" };
    [system, prefix, prompt, postfix].concat()
}

/// Tokens of prefilled text: ceil(chars / 4), at least 1.
pub fn prompt_token_count(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ReplyContext<'static> {
        ReplyContext {
            prompt: "p{turn}",
            turn: 3,
            role: "user",
            system: "sys",
            tools: "[t]",
            lora: "style",
            enable_thinking: false,
            sampling: "init",
            input: "prompt",
            prefill: 7,
            tokenizer: "builtin",
            embed: "fnv=00",
            cross_attn: "none",
        }
    }

    #[test]
    fn every_placeholder_is_replaced_once() {
        assert_eq!(
            expand("{prompt}|{turn}|{role}|{system}|{tools}|{lora}|{sampling}", &ctx()),
            "p{turn}|3|user|sys|[t]|style|init"
        );
        assert_eq!(
            expand("{input}|{prefill}|{tokenizer}|{embed}|{cross_attn}", &ctx()),
            "prompt|7|builtin|fnv=00|none"
        );
    }

    #[test]
    fn unknown_and_broken_braces_stay() {
        assert_eq!(expand("{x} {{prompt}} {turn", &ctx()), "{x} {p{turn}} {turn");
        assert_eq!(expand("", &ctx()), "");
        assert_eq!(expand("{", &ctx()), "{");
        assert_eq!(expand("é{role}中", &ctx()), "éuser中");
    }

    #[test]
    fn thinking_prefixes_the_reply() {
        let c = ReplyContext { enable_thinking: true, ..ctx() };
        assert_eq!(expand("[{role}]", &c), "<think>sim</think>[user]");
    }

    #[test]
    fn prompt_tokens_round_up_with_a_minimum_of_one() {
        assert_eq!(prompt_token_count(""), 1);
        assert_eq!(prompt_token_count("abcd"), 1);
        assert_eq!(prompt_token_count("abcde"), 2);
        assert_eq!(prompt_token_count("中文中文中"), 2);
        assert_eq!(prefilled_text(true, "S", "<u>", "q", "</u>"), "S<u>q</u>");
        assert_eq!(prefilled_text(false, "S", "<u>", "q", "</u>"), "<u>q</u>");
    }
}
