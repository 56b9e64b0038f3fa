//! Turns the API's description (`docs/openapi.yaml`, the one place it is
//! written) into the JSON that `GET /openapi.json` serves.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let source = manifest.join("../../docs/openapi.yaml");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .map_err(|error| format!("reading {}: {error}", source.display()))?;
    let description: serde_json::Value = serde_yaml_ng::from_str(&text)
        .map_err(|error| format!("{} is not valid YAML: {error}", source.display()))?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("openapi.json");
    std::fs::write(out, serde_json::to_string(&description)?)?;
    Ok(())
}
