//! `rkl serve` (next commit).
use crate::CmdResult;
pub fn main(_argv: &[String]) -> CmdResult {
    Err(crate::Failure::Failed("rkl serve: not yet".into()))
}
