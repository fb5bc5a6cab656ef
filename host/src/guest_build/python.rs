//! Builds a Python script directory (`app.py` and any modules beside it) into a component
//! with componentize-py. The WIT world and the `wasmtx` Python SDK are written out from
//! this binary, so a script directory needs nothing else; a build whose inputs (the
//! directory's `.py` files, the SDK, the WIT, the componentize-py version) are unchanged
//! since the last one is reused, as compiling CPython into a component takes seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::BuildError;

/// The module a Python script directory must have; it is the app componentize-py builds.
pub const APP_FILE: &str = "app.py";

/// Names the componentize-py executable, when it is not `componentize-py` on the `PATH`.
pub const COMPONENTIZE_PY_ENV: &str = "WASMTX_COMPONENTIZE_PY";

/// The componentize-py release wasmtx is tested with (python-sdk/requirements.txt).
pub const PINNED_VERSION: &str = "0.25.1";

const WIT: &str = include_str!("../../../wit/script.wit");

/// The SDK's files, as `python-sdk/wasmtx/` holds them.
const SDK_FILES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../python-sdk/wasmtx/__init__.py"),
    ),
    (
        "errors.py",
        include_str!("../../../python-sdk/wasmtx/errors.py"),
    ),
    ("log.py", include_str!("../../../python-sdk/wasmtx/log.py")),
    (
        "participant.py",
        include_str!("../../../python-sdk/wasmtx/participant.py"),
    ),
    (
        "rows.py",
        include_str!("../../../python-sdk/wasmtx/rows.py"),
    ),
    ("run.py", include_str!("../../../python-sdk/wasmtx/run.py")),
    (
        "values.py",
        include_str!("../../../python-sdk/wasmtx/values.py"),
    ),
];

/// Lines of componentize-py's output a failure carries.
const FAILURE_LINES: usize = 20;

/// The componentize-py to run: [`COMPONENTIZE_PY_ENV`], else `componentize-py`.
fn componentize_py() -> std::ffi::OsString {
    std::env::var_os(COMPONENTIZE_PY_ENV).unwrap_or_else(|| "componentize-py".into())
}

/// The version of the componentize-py this host would run, e.g. `0.25.1`.
pub fn componentize_py_version() -> Result<String, BuildError> {
    let output = Command::new(componentize_py())
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(BuildError::Componentize)?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().last() {
        Some(version) if output.status.success() => Ok(version.to_owned()),
        _ => Err(BuildError::Componentize(std::io::Error::other(format!(
            "`--version` printed {:?}",
            text.trim()
        )))),
    }
}

/// Builds the script in `dir` into `<out_dir>/<dir name>.wasm` (`out_dir` defaults to
/// `dir/build`) and returns that path.
pub fn build(dir: &Path, quiet: bool, out_dir: Option<&Path>) -> Result<PathBuf, BuildError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script".into());
    let out_dir = out_dir.map_or_else(|| dir.join("build"), Path::to_owned);
    let wasm = out_dir.join(format!("{name}.wasm"));
    let stamp_path = out_dir.join(format!("{name}.inputs"));
    let files = |source| BuildError::PythonFiles {
        dir: dir.to_owned(),
        source,
    };

    let version = componentize_py_version()?;
    if version != PINNED_VERSION && !quiet {
        eprintln!(
            "warning: componentize-py {version} found; wasmtx is tested with {PINNED_VERSION}"
        );
    }
    let stamp = input_stamp(dir, &out_dir, &version).map_err(files)?;
    if wasm.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(wasm);
    }

    let support = out_dir.join(".wasmtx-python");
    write_support(&support).map_err(files)?;
    let partial = out_dir.join(format!("{name}.wasm.partial"));
    let mut command = Command::new(componentize_py());
    if quiet {
        command.arg("--quiet");
    }
    command
        .arg("-d")
        .arg(support.join("wit"))
        .args(["-w", "script", "componentize", "-p"])
        .arg(support.join("sdk"))
        .arg("-p")
        .arg(dir)
        .arg(APP_FILE.trim_end_matches(".py"))
        .arg("-o")
        .arg(&partial)
        .current_dir(dir)
        .stdin(Stdio::null());
    let output = command.output().map_err(BuildError::Componentize)?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        let lines: Vec<&str> = printed.lines().collect();
        let tail = lines[lines.len().saturating_sub(FAILURE_LINES)..].join("\n");
        return Err(BuildError::PythonFailed {
            dir: dir.to_owned(),
            message: tail,
        });
    }
    if !quiet {
        // On stderr, so `--json` output stays one JSON object.
        eprint!("{printed}");
    }
    std::fs::rename(&partial, &wasm).map_err(files)?;
    std::fs::write(&stamp_path, stamp).map_err(files)?;
    Ok(wasm)
}

/// Writes the WIT (`wit/script.wit`) and the SDK (`sdk/wasmtx/`) under `support`.
fn write_support(support: &Path) -> std::io::Result<()> {
    let wit = support.join("wit");
    let sdk = support.join("sdk").join("wasmtx");
    std::fs::create_dir_all(&wit)?;
    std::fs::create_dir_all(&sdk)?;
    std::fs::write(wit.join("script.wit"), WIT)?;
    for (file, text) in SDK_FILES {
        std::fs::write(sdk.join(file), text)?;
    }
    Ok(())
}

/// A digest of everything a build reads: the script's `.py` files (not under `out_dir`),
/// the SDK, the WIT and the componentize-py version.
fn input_stamp(dir: &Path, out_dir: &Path, version: &str) -> std::io::Result<String> {
    let mut digest = Sha256::new();
    digest.update(version.as_bytes());
    digest.update(WIT.as_bytes());
    for (file, text) in SDK_FILES {
        digest.update(file.as_bytes());
        digest.update(text.as_bytes());
    }
    let mut sources = Vec::new();
    python_sources(dir, out_dir, &mut sources)?;
    sources.sort();
    for source in sources {
        digest.update(
            source
                .strip_prefix(dir)
                .unwrap_or(&source)
                .as_os_str()
                .as_encoded_bytes(),
        );
        digest.update(std::fs::read(&source)?);
    }
    Ok(hex::encode(digest.finalize()))
}

/// The `.py` files under `dir`, skipping `out_dir`, hidden folders and `__pycache__`.
fn python_sources(dir: &Path, out_dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if path != out_dir && !name.starts_with('.') && name != "__pycache__" {
                python_sources(&path, out_dir, found)?;
            }
        } else if name.ends_with(".py") {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_version_is_the_one_the_requirements_name() {
        let requirements = include_str!("../../../python-sdk/requirements.txt");
        assert!(
            requirements
                .lines()
                .any(|l| l.trim() == format!("componentize-py=={PINNED_VERSION}")),
            "python-sdk/requirements.txt must pin componentize-py=={PINNED_VERSION}"
        );
    }

    #[test]
    fn every_sdk_file_is_embedded() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python-sdk/wasmtx");
        let mut on_disk: Vec<String> = std::fs::read_dir(sdk)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = SDK_FILES.iter().map(|(f, _)| *f).collect();
        assert_eq!(on_disk, embedded);
    }
}
