use clap::Parser;
use edgeshard_builder::cli::{run, Cli};
use edgeshard_builder::error::warn;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let changes_current = cli.changes_current();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Stdin is not locked for the whole run: `build --input -` reads it through its own handle,
    // and a lock held here would make that read wait forever. `Stdin` locks per read.
    let mut input = std::io::BufReader::new(std::io::stdin());
    let result = run(cli, &mut out, &mut input);
    let flushed = out.flush();
    // Messages go through `warn`, which never panics: `eprintln!` does when stderr is full or
    // closed, and would turn any outcome into exit code 101.
    match (result, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        // The root already changed (a published build, a rollback): see `report_after_change`.
        (Ok(()), Err(e)) if changes_current => {
            warn(&format!(
                "warning: the command succeeded, but its report could not be written to stdout: \
                 {e}"
            ));
            ExitCode::SUCCESS
        }
        (Ok(()), Err(e)) => {
            warn(&format!("error: writing stdout: {e}"));
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            warn(&e.report());
            ExitCode::FAILURE
        }
    }
}
