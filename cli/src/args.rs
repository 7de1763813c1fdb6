//! A small argument parser: positional words, `--flag` and `--key value`
//! (or `--key=value`), each command declaring the options it knows.

use rkl::{Family, OpenConfig};
use std::path::PathBuf;
use std::str::FromStr;

/// A misuse of the command line; the message says what was wrong.
#[derive(Debug)]
pub struct Usage(pub String);

/// Options of every command that opens a model.
pub const MODEL_OPTIONS: &[&str] = &["--runtime", "--abi", "--max-context"];
pub const MODEL_FLAGS: &[&str] = &["--isolated"];

pub struct Args {
    pub positional: Vec<String>,
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `argv` knowing which options take a value and which are flags.
    pub fn parse(argv: &[String], options: &[&str], flags: &[&str]) -> Result<Args, Usage> {
        let mut out = Args { positional: Vec::new(), values: Vec::new(), flags: Vec::new() };
        let mut it = argv.iter();
        let mut only_positional = false;
        while let Some(arg) = it.next() {
            if only_positional || !arg.starts_with("--") {
                out.positional.push(arg.clone());
                continue;
            }
            if arg == "--" {
                only_positional = true;
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if options.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| Usage(format!("{name} needs a value")))?,
                };
                out.values.push((name, value));
            } else if flags.contains(&name.as_str()) && inline.is_none() {
                out.flags.push(name);
            } else {
                return Err(Usage(format!("unknown option '{arg}'")));
            }
        }
        Ok(out)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The option parsed as `T`, or a usage error naming it.
    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, Usage> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| Usage(format!("{name}: '{v}' is not a valid value"))),
        }
    }

    /// Exactly `n` positional words, named in the message if not.
    pub fn expect_positional(&self, names: &[&str]) -> Result<(), Usage> {
        if self.positional.len() != names.len() {
            return Err(Usage(format!(
                "expected {} ({}), got {} argument(s)",
                names.len(),
                names.join(" "),
                self.positional.len()
            )));
        }
        Ok(())
    }

    /// The open configuration for `model` from the model options.
    pub fn open_config(&self, model: &str) -> Result<OpenConfig, Usage> {
        let mut config = OpenConfig::new(model);
        config.runtime_path = self.value("--runtime").map(PathBuf::from);
        if let Some(abi) = self.value("--abi") {
            config.runtime_abi = Some(Family::from_str(abi).map_err(|e| Usage(format!("--abi: {e}")))?);
        }
        config.isolated = self.flag("--isolated");
        config.params.max_context_len = self.parsed("--max-context")?;
        Ok(config)
    }
}

/// `a` followed by `b`.
pub fn join<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}
