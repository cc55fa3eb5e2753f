//! The `kino` binary: CLI, configuration and wiring of the stages.

/// `eprintln!` that ignores write errors: a closed stderr (`kino … 2>&1 |
/// head`) must not panic the process.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that ignores write errors (a closed stdout, `kino search --json
/// | head -1`, ends the output, not the process with a panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod cmd;
mod config;
mod engines;
mod error;
mod fault;
mod fusion_weights;
mod library;
mod logging;
mod pipeline;
mod query;
mod staleness;
mod worker;

use clap::Parser;

// The models allocate and free tensors of tens of megabytes per batch; glibc
// returns those to the OS and faults them in again each time (about 10% of a
// Swin forward pass). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(err) => {
            let code = error::exit_code(&err);
            say!("kino: {}", one_line(&err));
            code
        }
    };
    std::process::exit(code);
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let config = config::Config::resolve(&cli.global)?;
    logging::init(&cli.global, config.log_format);
    tracing::debug!(?config, "configuration resolved");
    let quiet = cli.global.quiet > 0;
    cmd::dispatch(cli.command, &config, quiet)
}

/// `outer: cause: cause` on one line (anyhow's `{:#}`), without duplicates.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
