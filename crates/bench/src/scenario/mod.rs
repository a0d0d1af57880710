//! One module per subcommand; [`run`] dispatches.

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::report::Report;

pub mod catchup;
pub mod connections;
pub mod load;

/// Runs the subcommand; `None` for `ws-echo-server`, which serves until killed.
pub async fn run(cli: Cli) -> Result<Option<Report>> {
    let common = cli.common;
    let report = match cli.command {
        Command::Throughput(args) => load::throughput(&common, &args).await?,
        Command::Latency(args) => load::latency(&common, &args, "latency").await?,
        Command::Cluster(args) => load::cluster(&common, &args).await?,
        Command::WsEcho(args) => load::ws_echo(&common, &args).await?,
        Command::Connections(args) => connections::run(&common, &args).await?,
        Command::Catchup(args) => catchup::run(&common, &args).await?,
        Command::Compare(_) => unreachable!("cli::main runs compare"),
        Command::WsEchoServer(args) => {
            crate::echo::serve_on(args.listen).await?;
            return Ok(None);
        }
    };
    Ok(Some(report))
}
