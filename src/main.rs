//! The `streamstats` command line; see `streamstats --help`.

// Records, keys and rows are small, short-lived allocations; mimalloc handles that pattern far
// better than glibc malloc (measured: see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(error) = streamstats::cli::main() {
        eprintln!("streamstats: error: {error:#}");
        std::process::exit(2);
    }
}
