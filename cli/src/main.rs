//! `regate`: the command line for platform teams and auditors. Every failure is one clear line
//! on stderr and exit code 2; the other codes say how a request, a check or a test came out
//! (one table for every command: [`output::EXIT_TABLE`]).

#[macro_use]
mod output;

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
    about = "Policy-as-code approvals: test policies, simulate votes, start approvals, read and audit the decision log",
    after_help = output::EXIT_TABLE
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
    /// Print a shell completion script: `regate completions bash > /etc/bash_completion.d/regate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the reference of every command as Markdown (the book's CLI reference is made
    /// with it, so it cannot drift from the commands).
    #[command(hide = true)]
    Reference,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::Simulate(args) => policy_cmd::simulate(&args),
        Command::Log(command) => log_cmd::run(command),
        Command::Request(command) => request_cmd::run(command),
        Command::Audit(command) => audit_cmd::run(command),
        Command::Completions { shell } => completions(shell),
        Command::Reference => reference(),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        output::exit(output::ERROR)
    })
}

/// Every command's `--help`, as Markdown: a section a command, depth first.
fn reference() -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    fn section(command: &mut clap::Command, path: &str, out: &mut String) {
        let help = command.render_long_help().to_string();
        out.push_str(&format!(
            "### `{path}`\n\n```text\n{}\n```\n\n",
            help.trim_end()
        ));
        let names: Vec<String> = command
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .map(|c| c.get_name().to_string())
            .collect();
        for name in names {
            if let Some(sub) = command.find_subcommand_mut(&name) {
                section(sub, &format!("{path} {name}"), out);
            }
        }
    }
    let mut out = String::from(
        "## CLI reference\n\nGenerated from the `regate` binary itself (`regate reference`), \
         so it always says what the commands do.\n\n",
    );
    let mut command = Cli::command();
    command.build();
    section(&mut command, "regate", &mut out);
    out!("{out}");
    Ok(output::exit(output::OK))
}

/// The completion script for `shell`, generated from the command definitions.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "regate", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(output::exit(output::OK))
}

/// The AWS configuration of the command line: the standard chain (environment, profiles, SSO,
/// `credential_process`), with the SDK's own HTTPS client and the functions' retry policy.
pub(crate) async fn load_aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(regate_aws::SDK_MAX_ATTEMPTS))
        .load()
        .await
}
