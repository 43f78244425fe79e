//! `regate`: the command line for platform teams and auditors. Every failure is one clear line
//! on stderr and a non-zero exit code.

mod audit_cmd;
mod export;
mod log_cmd;
mod partitions;
mod policy_cmd;
mod publish_cmd;
mod report;
mod request_cmd;

use std::process::ExitCode;

/// `audit verify` allocates and frees for every item it reads, on every core at once: mimalloc
/// does that about a fifth faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "regate",
    version,
    about = "Policy-as-code approvals: test policies, simulate votes, start approvals, read and audit the decision log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Test and evaluate the Rego policy bundle.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Apply votes in order and show the decision after each one.
    Simulate(policy_cmd::SimulateArgs),
    /// Read and verify the decision log in DynamoDB (standard AWS configuration).
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Verify DynamoDB exports of the decision log offline, and backtest policies against them.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Start an approval from a pipeline and wait for it; show a request's state.
    #[command(subcommand)]
    Request(request_cmd::RequestCommand),
}

/// The exit code of an error where 1 means something else.
pub(crate) const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `audit` and `request` give exit code 1 a meaning of its own (integrity findings, a
    // rejection), so their errors exit 2.
    let (result, on_error) = match cli.command {
        Command::Policy(command) => (policy_cmd::run(command), ExitCode::FAILURE),
        Command::Simulate(args) => (policy_cmd::simulate(&args), ExitCode::FAILURE),
        Command::Log(command) => (log_cmd::run(command), ExitCode::FAILURE),
        Command::Request(command) => (request_cmd::run(command), ExitCode::from(EXIT_ERROR)),
        Command::Audit(command) => (audit_cmd::run(command), ExitCode::from(EXIT_ERROR)),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        on_error
    })
}

/// The AWS configuration of the command line: the standard chain (environment, profiles, SSO,
/// `credential_process`), with the SDK's own HTTPS client and the functions' retry policy.
pub(crate) async fn load_aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(regate_aws::SDK_MAX_ATTEMPTS))
        .load()
        .await
}
