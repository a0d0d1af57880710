//! `nexus-bench`: see `nexus-bench --help` and the library's documentation.

fn main() -> std::process::ExitCode {
    nexus_bench::cli::main()
}
