//! `ppdb`: the command-line program of the PPDB query engine.

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::{Cli, run, stdout};

/// Memory a finished query freed goes back to the system: glibc's allocator
/// kept it in per-thread arenas (8.9 GB held ten minutes after eight cross
/// joins ended).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack per runtime thread (reserved; touched only by deep queries).
const THREAD_STACK: usize = engine::THREAD_STACK;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Planning recurses as deep as a query's expressions nest (ADQL allows chains of
    // up to adql::MAX_OPERATORS): give every thread room for that, not tokio's 2 MiB.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // block_on polls on the calling thread: make that one as deep as the workers.
    let outcome = std::thread::Builder::new()
        .name("ppdb".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let outcome = rt.block_on(run(cli));
            // Dropping the runtime would wait for every blocking task still
            // running (a stopped server's abandoned parse or scan kept the
            // process alive after its grace and a second signal): what is
            // left after the command ended is abandoned, as a kill would.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            outcome
        })
        .map_err(anyhow::Error::from)
        .and_then(|t| {
            t.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the command stopped unexpectedly")))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read the output stopped reading (`ppdb snapshots | head -1`).
        Err(e) if e.is::<stdout::Closed>() => ExitCode::SUCCESS,
        Err(e) => {
            // On the command line, more time is one flag away.
            let message = explain(&e).replace(
                "give it more time where that is allowed (the service's limit is in \
                 /tap/capabilities)",
                "give it more time (`--max-duration SECONDS`)",
            );
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// An error as the user reads it: the context added on the way, then the
/// engine's own account of its error (without DataFusion's wrapping of it).
fn explain(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(engine) = cause.downcast_ref::<engine::Error>() {
            parts.push(engine.message());
            return parts.join(": ");
        }
        parts.push(cause.to_string());
    }
    format!("{e:#}")
}
