//! `regate`: the command line for platform teams and auditors. Every failure is one clear line
//! on stderr and a non-zero exit code.

mod audit_cmd;
mod export;
mod log_cmd;
mod policy_cmd;

use std::process::ExitCode;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "regate",
    version,
    about = "Policy-as-code approvals: test policies, simulate votes, read and audit the decision log"
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::Simulate(args) => policy_cmd::simulate(&args),
        Command::Log(command) => log_cmd::run(command),
        Command::Audit(command) => return audit_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The AWS configuration of the command line: the standard chain (environment, profiles, SSO,
/// `credential_process`), with the SDK's own HTTPS client and the functions' retry policy.
pub(crate) async fn load_aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(regate_aws::SDK_MAX_ATTEMPTS))
        .load()
        .await
}
