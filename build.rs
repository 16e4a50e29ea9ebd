//! Build script: compiles `proto/pluginsocket.proto` (Kong's ProtoBuf:1
//! schema) with protox, a pure-Rust protobuf compiler, into a descriptor
//! set in `OUT_DIR`. The library embeds it and builds its descriptor pool
//! from it (`src/message/protobuf/schema.rs`). No `protoc` is needed.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/pluginsocket.proto");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut compiler = match protox::Compiler::new(["proto"]) {
        Ok(c) => c,
        Err(e) => fail(&e),
    };
    compiler.include_imports(true);
    if let Err(e) = compiler.open_file("pluginsocket.proto") {
        fail(&e);
    }
    let bytes = compiler.encode_file_descriptor_set();
    if let Err(e) = std::fs::write(out.join("pluginsocket.bin"), bytes) {
        panic!("cannot write the descriptor set: {e}");
    }
}

fn fail(e: &protox::Error) -> ! {
    panic!("proto/pluginsocket.proto does not compile: {e}");
}
