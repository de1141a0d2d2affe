//! The `gradus` command line.

mod cli;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    cli::run()
}

/// Lets a write to a closed pipe end the process quietly, as it ends other command-line
/// tools, instead of failing the write. Rust ignores SIGPIPE by default, which turns
/// `gradus train ... | head` into a panic in `println!`.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread starts, and SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
