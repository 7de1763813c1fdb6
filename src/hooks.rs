//! Functions the runtime calls back during a run, besides the result
//! callback (release 1.3): a tokenizer and an embedder of the caller's own,
//! for models whose tokenizer or embedding layer lives outside the
//! `.rkllm` file. They run on the runtime's thread, in the middle of a run.

use std::fmt;
use std::sync::Arc;

/// Turns text into token ids for the runtime.
pub trait Tokenizer: Send + Sync {
    /// Writes the ids of `text` into `tokens` (the runtime's buffer) and
    /// returns how many it wrote, or `None` when it cannot (the run then
    /// fails). Must not call into the same model.
    fn tokenize(&self, text: &str, tokens: &mut [i32]) -> Option<usize>;
}

/// Turns token ids into embedding rows for the runtime.
pub trait Embedder: Send + Sync {
    /// Fills `out` (`tokens.len()` rows of the model's dimension, the
    /// runtime's buffer) and returns whether it did (false fails the run).
    /// Must not call into the same model.
    fn embed(&self, tokens: &[i32], out: &mut [f32]) -> bool;
}

/// The caller's own tokenizer and embedder, registered at open
/// ([`OpenConfig::hooks`](crate::OpenConfig::hooks)); 1.3 only, and not in
/// isolation mode (the worker process cannot call into this one).
#[derive(Clone, Default)]
pub struct RuntimeHooks {
    /// Replaces the model's tokenizer.
    pub tokenizer: Option<Arc<dyn Tokenizer>>,
    /// Replaces the model's embedding lookup.
    pub embedder: Option<Arc<dyn Embedder>>,
}

impl RuntimeHooks {
    /// Whether any hook is set.
    pub fn any(&self) -> bool {
        self.tokenizer.is_some() || self.embedder.is_some()
    }
}

impl fmt::Debug for RuntimeHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHooks")
            .field("tokenizer", &self.tokenizer.is_some())
            .field("embedder", &self.embedder.is_some())
            .finish()
    }
}

impl PartialEq for RuntimeHooks {
    /// The same hooks: the same objects.
    fn eq(&self, other: &RuntimeHooks) -> bool {
        fn same<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
        }
        same(&self.tokenizer, &other.tokenizer) && same(&self.embedder, &other.embedder)
    }
}
