//! Isolation mode: what a restart must restore (chat template, function
//! tools, LoRA adapters, the loaded prompt cache) survives a restart that
//! comes right after the worker did the call and before rkl recorded it.
//! In its own test binary because it installs a logger, which it uses to
//! restart the model at exactly that moment.

mod common;

use common::*;
use rkl::{GenerateRequest, Model};
use std::cell::RefCell;
use std::ops::ControlFlow;

thread_local! {
    /// The model to restart once this thread's next setup call was done by
    /// the worker.
    static RESTART_WHEN_DONE: RefCell<Option<Model>> = const { RefCell::new(None) };
}

/// Restarts `RESTART_WHEN_DONE`'s model when rkl logs that a setup call
/// was done by a worker (on the calling thread, before it is recorded).
struct RestartWhenDone;

static LOGGER: RestartWhenDone = RestartWhenDone;

impl log::Log for RestartWhenDone {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if record.args().to_string().contains(": done by worker") {
            if let Some(model) = RESTART_WHEN_DONE.with(|m| m.borrow_mut().take()) {
                model.restart().unwrap();
            }
        }
    }

    fn flush(&self) {}
}

fn reply(model: &Model, prompt: &str) -> String {
    let mut text = String::new();
    model
        .generate(&GenerateRequest::new(prompt), |c| {
            text.push_str(c);
            ControlFlow::Continue(())
        })
        .unwrap();
    text
}

#[test]
fn a_restart_between_a_setup_call_and_its_record_loses_nothing() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let path = model_file("restart-race", &["reply = [{system}][{tools}] {prompt}"]);
    let mut c = config(&path);
    c.isolated = true;
    c.host_path = Some(env!("CARGO_BIN_EXE_rkl-host").into());
    let model = Model::open(&c).unwrap();

    RESTART_WHEN_DONE.with(|m| *m.borrow_mut() = Some(model.clone()));
    model.set_chat_template("SYS", "<u>", "</u>").unwrap();
    assert!(RESTART_WHEN_DONE.with(|m| m.borrow().is_none()), "the restart did not happen");
    assert_eq!(model.restarts(), 1);
    assert!(reply(&model, "x").starts_with("[SYS]"), "the template was lost by the restart");

    RESTART_WHEN_DONE.with(|m| *m.borrow_mut() = Some(model.clone()));
    model.set_function_tools("TOOLSYS", "[{\"name\":\"f\"}]", "<tool>").unwrap();
    assert_eq!(model.restarts(), 2);
    let text = reply(&model, "y");
    assert!(text.contains("[{\"name\":\"f\"}]"), "the function tools were lost by the restart: {text}");
}
