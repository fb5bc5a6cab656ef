//! `wasmtx serve`: the long-running host (see `wasmtx::server`).

use std::process::ExitCode;

use clap::Args;
use wasmtx::server::{Server, shutdown_signal};

use super::{HostArgs, input_error, output};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Address to listen on, IP:PORT (overrides `[server] listen`; port 0 picks a free
    /// one). Without tokens in the configuration only loopback addresses are allowed.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Print the OpenAPI document of every route and exit.
    #[arg(long)]
    openapi: bool,
}

pub async fn serve(args: ServeArgs) -> ExitCode {
    if args.openapi {
        println!("{}", wasmtx::server::openapi_json());
        return ExitCode::SUCCESS;
    }
    let config = match args.host.config_with_participants() {
        Ok(config) => config,
        Err(error) => return output::print_failure(&error, false),
    };
    let server = match Server::bind(config, args.listen).await {
        Ok(server) => server,
        Err(err) => return output::print_failure(&input_error(err), false),
    };
    match server.url() {
        // The first line on stdout, for scripts and tests that listen on port 0.
        Ok(url) => println!("listening on {url}"),
        Err(err) => eprintln!("wasmtx: cannot read the listening address: {err}"),
    }
    match server.run(shutdown_signal()).await {
        Ok(()) => {
            eprintln!("wasmtx: stopped: in-flight transactions finished, decision log flushed");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("wasmtx: the server failed: {err}");
            ExitCode::from(1)
        }
    }
}
