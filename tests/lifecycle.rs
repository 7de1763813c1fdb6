//! Handles are created and destroyed exactly once. Kept in its own test
//! binary because it reads the simulator's process-wide handle count.

mod common;

use common::*;
use rkl::{ErrorKind, GenerateRequest};
use std::ops::ControlFlow;

#[test]
fn every_handle_is_destroyed_once_by_close_or_drop() {
    let lib = sim_library("");
    let model = open("life", &[]);
    let live = |l| sim_stats(&lib)[1] == l;
    assert!(live(1));
    let clone = model.clone();
    drop(model);
    assert!(live(1), "a clone keeps the model open");
    clone.close().unwrap();
    assert!(live(0));
    clone.close().unwrap(); // no double destroy: the simulator would abort
    assert_eq!(clone.kv_cache_tokens().unwrap_err().kind(), ErrorKind::Closed);
    drop(clone);

    for _ in 0..10 {
        let m = open("life-loop", &[]);
        m.generate(&GenerateRequest::new("x"), |_| ControlFlow::Continue(())).unwrap();
    }
    assert!(live(0), "dropping the last clone destroys the handle");
}
