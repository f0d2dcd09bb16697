use std::process::ExitCode;

use clap::Parser;
use live_migration_guard::cli::{Cli, Command, run_evaluate};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Evaluate(args) => {
            let code = run_evaluate(
                &args,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            ExitCode::from(code)
        }
    }
}
