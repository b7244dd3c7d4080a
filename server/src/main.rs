use std::process::ExitCode;

fn main() -> ExitCode {
    // A missing .env is normal; variables already set in the environment win over it.
    let _ = dotenvy::dotenv();
    let cli = server::cli::Cli::load();
    // Before any thread exists: this may replace the process with itself (see huge_pages).
    if cli.config.models.huge_pages && cli.runs_models() {
        server::huge_pages::restart_with_huge_pages();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
