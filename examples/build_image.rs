//! Builds an image from a spec: `cargo run --example build_image -- SPEC.toml DEST`.
//! The benchmarks use it to generate their images.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, dest] = args.as_slice() else {
        eprintln!("usage: build_image SPEC.toml DEST (e.g. oci:/tmp/img:latest)");
        return ExitCode::from(2);
    };
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let spec = unroot::imagespec::ImageSpec::load(std::path::Path::new(spec))?;
        let dest = unroot::model::ImageLocation::parse(dest)?;
        Ok(spec.build(&dest)?.to_string())
    };
    match run() {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
