//! The `kiln` command: train | sample | gradcheck | bench | info.

use std::process::ExitCode;

fn main() -> ExitCode {
    kiln::cli::main()
}
