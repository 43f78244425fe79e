//! The functions' log lines, as Lambda's advanced logging controls ask for them: JSON when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, at the level of `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`,
//! else INFO). Each line carries the invocation's span, whose `requestId` is Lambda's request
//! id. A level may also be given per target (`info,regate_aws=debug`), without regular
//! expressions: their engine would be a fifth of a function's zip.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the process's subscriber; `var` reads a setting (the environment, in a function).
/// A level that does not parse falls back to INFO. Calling it twice does nothing.
pub fn init(var: impl Fn(&str) -> Option<String>) {
    let level = var("AWS_LAMBDA_LOG_LEVEL").or_else(|| var("RUST_LOG"));
    let filter = level
        .and_then(|text| text.to_ascii_lowercase().parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let lines = if json {
        lines.json().boxed()
    } else {
        lines.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::filter::Targets;

    #[test]
    fn lambda_levels_and_per_target_levels_parse() {
        for text in ["info", "debug", "warn,regate_aws=debug", "trace"] {
            assert!(text.parse::<Targets>().is_ok(), "{text}");
        }
    }
}
