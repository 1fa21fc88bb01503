//! Compiles `mini/v1/*.proto` with protox (a protobuf compiler in Rust, so no `protoc` has to
//! be installed) and generates prost messages and tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "mini/v1/container.proto",
        "mini/v1/image.proto",
        "mini/v1/node.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
