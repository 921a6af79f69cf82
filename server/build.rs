//! Generates the server's metadata-command protobuf types with the pure-Rust codegen (no `protoc` needed).
//!
//! The generated file starts with inner attributes (`#![allow(...)]`), which `include!` cannot
//! splice into the middle of a module, so we also write a one-line module file that points at it
//! with `#[path]`; `lib.rs` includes that module file instead.

use std::{env, fs, path::PathBuf};

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    println!("cargo:rerun-if-changed=proto/meta.proto");
    println!("cargo:rerun-if-changed=proto/groups.proto");
    println!("cargo:rerun-if-changed=proto/partition.proto");
    println!("cargo:rerun-if-changed=build.rs");

    protobuf_codegen_pure::Codegen::new()
        .out_dir(&out_dir)
        .include("proto")
        .input("proto/meta.proto")
        .input("proto/groups.proto")
        .input("proto/partition.proto")
        .run()
        .expect("protobuf codegen of proto/meta.proto, proto/groups.proto and proto/partition.proto failed");

    let mut modules = String::new();
    for name in ["meta", "groups", "partition"] {
        let generated = out_dir.join(format!("{name}.rs"));
        assert!(generated.exists(), "codegen did not write {}", generated.display());
        // `{:?}` quotes and escapes the path so it is a valid string literal on every platform.
        // The allows cover lints newer than rust-protobuf 2.28's generator, in generated code only.
        modules.push_str(&format!(
            "#[allow(unknown_lints, renamed_and_removed_lints, unused_parens, \
             mismatched_lifetime_syntaxes)]\n#[path = {:?}]\npub mod {name};\n",
            generated.display().to_string()
        ));
    }
    fs::write(out_dir.join("proto_modules.rs"), modules).expect("write proto_modules.rs to OUT_DIR");
}
