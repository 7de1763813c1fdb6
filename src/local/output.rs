//! The runs that return floats instead of text: the last hidden layer and
//! the logits of a request's input, copied out of the runtime's callback.

use super::model::LocalModel;
use crate::config::GenerateRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::outcome::{FinishReason, Output, Stats, Step, Tensor};

impl LocalModel {
    /// Runs `request` for `output` (not [`Output::Text`]) and returns the
    /// floats the runtime reported, with the run's figures.
    pub fn output(&self, request: &GenerateRequest, output: Output) -> Result<(Tensor, Stats)> {
        let what = match output {
            Output::Text => return Err(Error::invalid("text is generated with generate or stream, not output")),
            Output::HiddenStates => "hidden states",
            Output::Logits => "logits",
        };
        let mut stream = self.stream_for(request, output)?;
        let mut text = String::new();
        let stats = loop {
            text.clear();
            if let Step::Finished(stats) = stream.next_into(None, &mut text)? {
                break stats;
            }
        };
        if stats.finish == FinishReason::Aborted {
            return Err(Error::new(ErrorKind::Aborted, format!("computing the {what} was aborted")));
        }
        let floats = stream.take_floats();
        if let Some(why) = floats.error {
            return Err(Error::new(ErrorKind::RuntimeFailed, format!("the runtime's {what}: {why}")));
        }
        if floats.tokens == 0 {
            return Err(Error::new(ErrorKind::RuntimeFailed, format!("the runtime returned no {what}")));
        }
        Ok((Tensor { values: floats.values, tokens: floats.tokens, dim: floats.dim }, stats))
    }
}
