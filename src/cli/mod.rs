//! Command-line interface. Every failure prints one readable line to stderr
//! and exits non-zero; nothing panics on user input.

mod bench;
mod gradcheck;
mod info;
mod sample;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// kiln: a from-scratch neural-network engine with a GAN trainer.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a GAN (default: the `toy` preset on ring8, ~20 s on 2 cores).
    Train(Box<train::TrainArgs>),
    /// Generate samples from a trained run (.npy or PNG grid).
    Sample(sample::SampleArgs),
    /// Check every op's gradients against central finite differences (f64).
    Gradcheck(gradcheck::GradcheckArgs),
    /// Benchmark kernels and training steps against this machine's peak.
    Bench(bench::BenchArgs),
    /// Versions, threads, CPU features and CUDA devices.
    Info,
}

/// Parses arguments and runs the command; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line: clap's first line, without the usage block.
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("kiln: error: {first} (see kiln --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Sample(a) => sample::run(a),
        Command::Gradcheck(a) => gradcheck::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Info => info::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln: error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Collapses a multi-line message into one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `f`, for work on `device`, on a worker thread of rayon's global pool
/// when the device is the CPU. The kernels' parallel loops then start from
/// inside the pool: with one thread they run inline, and with several the
/// calling worker takes part, instead of the main thread handing every
/// parallel op to the pool and sleeping until it is done (two thread wake-ups
/// per op). GPU work stays on the calling thread, which set the device up.
pub(crate) fn on_pool<R: Send>(device: kiln_core::Device, f: impl FnOnce() -> R + Send) -> R {
    if device == kiln_core::Device::Cpu {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// Builds rayon's global pool with `threads` workers (None: all cores).
pub(crate) fn set_threads(threads: Option<usize>) -> kiln_core::Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(kiln_core::Error::Invalid("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| kiln_core::Error::Invalid(format!("cannot set up {n} threads: {e}")))?;
    }
    Ok(())
}
