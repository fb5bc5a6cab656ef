//! Exporting a script's `run` function: the [`export!`](crate::export) and
//! [`export_json!`](crate::export_json) macros and the helpers their expansions call.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Exports `run` as the script's entry point, the WIT export `run`.
///
/// `run` is a function (or closure) `fn(String) -> Result<O, E>` with `O: Into<String>`
/// and `E: Display`: it gets the transaction's input and returns its output (`Ok` votes
/// commit) or the reason to abort (`Err`, sent to the caller as its `Display` text).
/// Invoke it once, at the top level of the script crate.
///
/// ```no_run
/// fn run(input: String) -> Result<String, wasmtx_guest::Error> {
///     Ok(format!("got {input}"))
/// }
/// wasmtx_guest::export!(run);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export {
    ($run:expr) => {
        const _: () = {
            struct WasmtxScript;

            impl $crate::bindings::Guest for WasmtxScript {
                fn run(
                    input: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    $crate::__rt::run_result(($run)(input))
                }
            }

    $crate::bindings::__export_script!(WasmtxScript with_types_in $crate::bindings);
        };
    };
}

/// Exports `run` as the script's entry point, with JSON input and output.
///
/// `run` is `fn(In) -> Result<Out, E>` with `In: DeserializeOwned`, `Out: Serialize` and
/// `E: Display`. Input that is not valid JSON for `In` aborts with
/// `invalid input JSON: <serde_json's message>`, before `run` is called.
///
/// ```no_run
/// #[derive(serde::Deserialize)]
/// struct In { name: String }
/// #[derive(serde::Serialize)]
/// struct Out { greeting: String }
///
/// fn run(input: In) -> Result<Out, String> {
///     Ok(Out { greeting: format!("hello {}", input.name) })
/// }
/// wasmtx_guest::export_json!(run);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_json {
    ($run:expr) => {
        $crate::export!(|input: ::std::string::String| $crate::__rt::run_json(&input, $run));
    };
}

/// Maps a script's result to the WIT result: the output as a string, the error as its
/// `Display` text.
pub fn run_result<O: Into<String>, E: Display>(result: Result<O, E>) -> Result<String, String> {
    result.map(Into::into).map_err(|e| e.to_string())
}

/// Runs `run` on `input` parsed as JSON and returns its output as JSON text.
pub fn run_json<I, O, E, F>(input: &str, run: F) -> Result<String, String>
where
    I: DeserializeOwned,
    O: Serialize,
    E: Display,
    F: FnOnce(I) -> Result<O, E>,
{
    let input = serde_json::from_str(input).map_err(|e| format!("invalid input JSON: {e}"))?;
    let output = run(input).map_err(|e| e.to_string())?;
    serde_json::to_string(&output).map_err(|e| format!("could not serialize the output: {e}"))
}
