//! Per-request sampling: on 1.3 the run gets its own sampling struct (unset
//! fields are the model's values: its open setting, else the runtime's
//! default); on 1.2 it is refused, never silently ignored. Both modes.

mod common;

use common::*;
use rkl::{ErrorKind, Family, GenerateRequest, Model, Sampling};
use std::ops::ControlFlow;

fn open(isolated: bool) -> Model {
    let mut c = config(&model_file("sampling", &["reply = [{sampling}]"]));
    c.params.top_k = Some(7);
    c.isolated = isolated;
    c.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
    Model::open(&c).unwrap()
}

fn reply(model: &Model, sampling: Option<Sampling>) -> rkl::Result<String> {
    let mut request = GenerateRequest::new("x");
    request.sampling = sampling;
    let mut text = String::new();
    model.generate(&request, |c| {
        text.push_str(c);
        ControlFlow::Continue(())
    })?;
    Ok(text)
}

#[test]
fn a_request_samples_its_own_way_on_1_3_and_is_refused_on_1_2() {
    for isolated in [false, true] {
        let model = open(isolated);
        let own = Sampling { temperature: Some(0.25), mirostat: Some(2), ..Sampling::default() };
        match sim_abi() {
            Family::V1_3 => {
                let text = reply(&model, Some(own)).unwrap();
                assert_eq!(
                    text,
                    "[top_k=7 top_p=0.9 temperature=0.25 repeat_penalty=1.1 frequency_penalty=0 presence_penalty=0 \
                     mirostat=2 mirostat_tau=5 mirostat_eta=0.1]",
                    "isolated {isolated}: set fields, the open setting (top_k) and the runtime's defaults"
                );
                assert_eq!(reply(&model, None).unwrap(), "[init]", "a request without its own uses the model's");
            }
            _ => {
                let e = reply(&model, Some(own)).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NotSupported, "isolated {isolated}: {e}");
                assert!(e.message().contains("needs a 1.3 runtime"), "{e}");
                assert_eq!(reply(&model, None).unwrap(), "[init]");
            }
        }
        for bad in [
            Sampling { top_p: Some(1.5), ..Sampling::default() },
            Sampling { temperature: Some(f32::NAN), ..Sampling::default() },
            Sampling { mirostat: Some(3), ..Sampling::default() },
        ] {
            let e = reply(&model, Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
        model.close().unwrap();
    }
}
