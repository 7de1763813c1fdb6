//! The one API over both backends: [`Model`] and its [`Stream`], which run
//! the runtime in this process (`crate::local`) or in a worker process
//! (`crate::isolation`), chosen at open.

mod model;
mod stream;

pub use model::Model;
pub use stream::{Stream, StreamAborter};
