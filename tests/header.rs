//! `include/rkl.h` must be exactly what cbindgen (the pinned version in
//! Cargo.toml) makes from `src/ffi` with `cbindgen.toml`.
//!
//! After changing the C API, regenerate and commit the header:
//!
//! ```text
//! RKL_BLESS=1 cargo test --test header      (or: make header)
//! ```

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/rkl.h");
    let fresh = generate();
    if std::env::var_os("RKL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write include/rkl.h");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(fresh.lines().count()) + 1, |n| n + 1);
        panic!(
            "include/rkl.h is stale (first difference at line {line}).\n\
             Regenerate it with `RKL_BLESS=1 cargo test --test header` (or `make header`) and commit it."
        );
    }
}

#[test]
fn header_has_version_macros_matching_the_crate() {
    let fresh = generate();
    for (name, value) in [
        ("RKL_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("RKL_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("RKL_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(fresh.contains(&format!("#define {name} {value}")), "{name} {value} missing");
    }
}
