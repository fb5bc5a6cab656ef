//! Why a component cannot run here, in words that say what to do: an import wasmtx does
//! not provide, the component-model async ABI (not supported: a script's `run` is one
//! synchronous call per transaction), or a component that does not compile.

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// The interfaces the sandbox links: the script world, and WASI 0.2 with nothing granted.
const PROVIDED: &[&str] = &[
    "wasmtx:script/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

const PROVIDED_TEXT: &str = "scripts get wasmtx:script/sql and log, and WASI 0.2's cli, io, clocks, random, filesystem and sockets with nothing granted";

/// How to build a component without the async ABI, per toolchain.
const WITHOUT_ASYNC: &str = "build it with synchronous exports: jco componentize --backend quickjs needs `--backend-qjs-disable-async`; componentize-py and componentize-js export `run` synchronously by default";

/// A refusal naming the first import outside [`PROVIDED`], if there is one.
pub fn unprovided_import(path: &Path, component: &Component, engine: &Engine) -> Option<LoadError> {
    let ty = component.component_type();
    let missing: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !PROVIDED.iter().any(|provided| name.starts_with(provided)))
        .collect();
    let first = missing.first()?;
    let more = match missing.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Some(LoadError::Refused {
        path: path.to_owned(),
        reason: format!(
            "it imports {first}{more}, which wasmtx does not provide ({PROVIDED_TEXT}); {}",
            build_without(first)
        ),
    })
}

/// What to do about an import wasmtx does not provide.
fn build_without(import: &str) -> &'static str {
    if import.starts_with("wasi:http/") {
        "build it without HTTP: componentize-js (and `jco componentize`) add wasi:http unless given `--disable http --disable fetch-event`"
    } else {
        "build it without that import (a script reaches databases only through wasmtx:script/sql)"
    }
}

/// A compile failure as a load error; the async ABI gets its own explanation.
pub fn compile_error(path: &Path, err: &wasmtime::Error) -> LoadError {
    let message = format!("{err:#}");
    if uses_async_abi(&message) {
        return LoadError::Refused {
            path: path.to_owned(),
            reason: format!(
                "it uses the component-model async ABI ({message}), which wasmtx does not support; {WITHOUT_ASYNC}"
            ),
        };
    }
    LoadError::Invalid {
        path: path.to_owned(),
        message,
    }
}

/// Whether a validation message is about the component-model async ABI.
fn uses_async_abi(message: &str) -> bool {
    message.contains("component model async")
        || message.contains("`async` canonical option")
        || message.contains("async stackful")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_async_abi() {
        assert!(uses_async_abi(
            "`task.return` requires the component model async feature (at offset 0x12)"
        ));
        assert!(!uses_async_abi("type mismatch: expected i32"));
    }
}
