//! `imgpipe`: resize, orient and strip uploaded images. See `imgpipe --help`.

fn main() -> std::process::ExitCode {
    imgpipe::cli::main()
}
