//! Compiles `proto/frame.proto` into Rust (prost) when the `frames` feature is on, with the
//! protoc binary of the `protoc-bin-vendored` crate: no system protoc is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_FRAMES").is_some() {
        #[cfg(feature = "frames")]
        frames::compile();
    }
}

#[cfg(feature = "frames")]
mod frames {
    /// The schema, relative to this crate's directory.
    const PROTO: &str = "../../proto/frame.proto";
    const INCLUDE: &str = "../../proto";

    pub fn compile() {
        println!("cargo:rerun-if-changed={PROTO}");
        let protoc = protoc_bin_vendored::protoc_bin_path()
            .unwrap_or_else(|e| panic!("the vendored protoc is not available: {e}"));
        prost_build::Config::new()
            .protoc_executable(protoc)
            // Ordered maps: the same frame always encodes to the same bytes.
            .btree_map(["."])
            .compile_protos(&[PROTO], &[INCLUDE])
            .unwrap_or_else(|e| panic!("cannot compile {PROTO}: {e}"));
    }
}
