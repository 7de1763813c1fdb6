//! Loading the runtime and telling its release, against real simulator builds.

mod common;

use common::*;
use rkl::{ErrorKind, Family, Model};

#[test]
fn detects_the_simulated_release_without_help() {
    let model = open("detect", &[]);
    assert_eq!(model.family(), sim_abi());
    // Heard on stdout at init, the only place the runtime tells it.
    let expected = match sim_abi() {
        Family::V1_2 => "1.2.3",
        Family::V1_3 => "1.3.0",
        other => unreachable!("the default simulator build does not imitate {other}"),
    };
    assert_eq!(model.runtime_version(), Some(expected));
    assert_eq!(model.runtime_path(), sim_library("").to_str().unwrap());
}

#[test]
fn a_matching_override_is_accepted() {
    let mut cfg = config(&model_file("override-ok", &[]));
    cfg.runtime_abi = Some(sim_abi());
    let model = Model::open(&cfg).unwrap();
    assert_eq!(model.family(), sim_abi());
}

#[test]
fn a_wrong_override_is_refused_before_init() {
    let wrong = match sim_abi() {
        Family::V1_2 => Family::V1_3,
        _ => Family::V1_2,
    };
    let mut cfg = config(&model_file("override-wrong", &[]));
    cfg.runtime_abi = Some(wrong);
    let err = Model::open(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported, "{err}");
    assert!(err.message().contains(&format!("set to {wrong}")), "{err}");
    assert!(err.message().contains(&format!("writes the {} layout", sim_abi())), "{err}");
    // The refusal did not disturb the runtime for correct callers.
    assert!(Model::open(&config(&model_file("override-after", &[]))).is_ok());
}

#[test]
fn release_1_1_is_refused_by_its_symbols() {
    let mut cfg = config(&model_file("v11", &[]));
    cfg.runtime_path = Some(sim_library("family-1-1"));
    let err = Model::open(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported);
    assert!(err.message().contains("family 1.1 or older"), "{err}");
    for old in ["1.1", "1.1.4", "1.0.1"] {
        let e = old.parse::<Family>().unwrap_err();
        assert!(e.contains("1.1 or older"), "{old}: {e}");
    }
}

#[test]
fn release_1_2_0_is_told_by_its_symbols_and_no_override_changes_that() {
    let mut cfg = config(&model_file("v120", &[]));
    cfg.runtime_path = Some(sim_library("family-1-2-0"));
    let model = Model::open(&cfg).unwrap();
    assert_eq!(model.family(), Family::V1_2_0);
    for wrong in [Family::V1_2, Family::V1_3] {
        cfg.runtime_abi = Some(wrong);
        let err = Model::open(&cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported, "{wrong}: {err}");
    }
    cfg.runtime_abi = Some("1.2.1b1".parse().unwrap());
    assert_eq!(Model::open(&cfg).unwrap().family(), Family::V1_2_0);
}

#[test]
fn a_missing_symbol_is_named() {
    let mut cfg = config(&model_file("noabort", &[]));
    cfg.runtime_path = Some(sim_library("missing-abort"));
    let err = Model::open(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported);
    assert!(err.message().contains("missing symbol(s) rkllm_abort"), "{err}");
}

#[test]
fn a_release_with_a_larger_param_struct_is_refused_not_overrun() {
    // Its rkllm_createDefaultParam writes 4096 bytes through the result
    // pointer: into a fixed stack slot it would overwrite the runtime
    // thread's stack; measured, it is refused cleanly, in both modes.
    for isolated in [false, true] {
        let mut cfg = config(&model_file("oversized-param", &[]));
        cfg.runtime_path = Some(sim_library("oversized-param"));
        cfg.isolated = isolated;
        cfg.host_path = isolated.then(|| env!("CARGO_BIN_EXE_rkl-host").into());
        let err = Model::open(&cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported, "isolated {isolated}: {err}");
        assert!(err.message().contains("wrote 4096 bytes"), "{err}");
    }
}

#[test]
fn a_library_that_is_not_a_runtime_is_refused() {
    let mut cfg = config(&model_file("libm", &[]));
    cfg.runtime_path = Some("libm.so.6".into());
    let err = Model::open(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeUnsupported);
    assert!(err.message().contains("rkllm_init") && err.message().contains("rkllm_run"), "{err}");
}

#[test]
fn a_missing_runtime_is_reported() {
    let mut cfg = config(&model_file("nort", &[]));
    cfg.runtime_path = Some("/nonexistent/librkllmrt.so".into());
    let err = Model::open(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeNotFound);
    assert!(err.message().contains("/nonexistent/librkllmrt.so"), "{err}");
}

#[test]
fn a_second_copy_of_the_runtime_is_a_second_runtime() {
    // Another file is another dlopen instance with its own dispatcher.
    let copy = temp_dir("copy").join("librkllmrt.so");
    std::fs::copy(sim_library(""), &copy).unwrap();
    let mut cfg = config(&model_file("copy", &[]));
    cfg.runtime_path = Some(copy.clone());
    let model = Model::open(&cfg).unwrap();
    assert_eq!(model.runtime_path(), copy.to_str().unwrap());
    assert_eq!(model.family(), sim_abi());
}
