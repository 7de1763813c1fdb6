//! Gives the shared library its SONAME, so programs linked against
//! `librkl.so` record `librkl.so.0` and keep working across compatible
//! upgrades. Only the cdylib gets the flag; the rlib and staticlib are
//! untouched.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librkl.so.{major}");
    }
}
