//! The `streamstats` command line; see `streamstats --help`.

fn main() {
    if let Err(error) = streamstats::cli::main() {
        eprintln!("streamstats: error: {error:#}");
        std::process::exit(2);
    }
}
