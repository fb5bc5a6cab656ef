//! `--warm-uses N` of `wasmtx run` and `wasmtx bench`: the command line's way to the warm
//! instances `[server.warm.<plugin>]` gives a server's plugins (`wasmtx::script::Warm`). The
//! rules (what is reused, when an instance is dropped, what is refused) are the library's.

use std::sync::Arc;

use wasmtx::script::{ScriptLogic, Warm, WarmSettings};

/// What the flag does, and what an operator gives up with it.
macro_rules! uses_help {
    () => {
        "Let one instance of the script serve up to N transactions (N ≥ 1), one at a time, \
         instead of a fresh instance per transaction (the default). What you give up: the \
         script may carry data from one of its transactions to the next (inputs, rows it \
         read, its outputs) in its memory; only its own, since no other script ever gets its \
         instance. An instance is dropped after a trap, a timeout or any limit"
    };
}

/// `wasmtx run --warm-uses`.
pub const RUN_HELP: &str = concat!(
    uses_help!(),
    ". `run` starts one transaction, so its instance serves only that one"
);

/// `wasmtx bench --warm-uses`.
pub const BENCH_HELP: &str = concat!(
    uses_help!(),
    ". Each script then runs both ways, interleaved: fresh under its own name and warm as \
     NAME-warm, whose figures say how many transactions reused an instance"
);

/// Parses `--warm-uses`: a whole number of transactions, checked as the server checks
/// `max_uses`.
pub fn parse_uses(text: &str) -> Result<WarmSettings, String> {
    let uses: u32 = text
        .trim()
        .parse()
        .map_err(|_| "a whole number of transactions per instance, at least 1".to_owned())?;
    WarmSettings::for_uses(uses).map_err(|e| e.replace("max_uses", "transactions per instance"))
}

/// `logic` running warm under a claim of its own, with the claim.
pub fn warm_logic(logic: ScriptLogic, settings: WarmSettings) -> (ScriptLogic, Arc<Warm>) {
    let warm = Arc::new(Warm::new(settings));
    (logic.warm(warm.clone()), warm)
}
