//! Maps a scheduled event (or a direct invoke: see [`Input`]) to one sweep of the core, and its
//! report to the result and the logs.

use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use regate_core::approvals::{Approvals, SweepBudget, SweepReport};
use regate_core::ports::Ports;
use serde::Deserialize;

/// An EventBridge scheduled event carries nothing the sweep needs. A direct invoke may bound
/// it (`limit`), sweep one request alone (`request_id`), and, where the sweeper is configured to
/// accept it (`SWEEP_ACCEPTS_NOW=true`: local and test stacks only), sweep as of a later time
/// (`now`, RFC 3339), so reminders and re-evaluations can be tested without waiting for them.
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub now: Option<String>,
}

impl Input {
    /// The input of one run. A scheduled event's own fields are not ours and are ignored (as is
    /// an empty payload); ours of the wrong type are refused, naming the field.
    pub fn from_payload(payload: serde_json::Value) -> Result<Self, Diagnostic> {
        if payload.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(payload).map_err(|error| Diagnostic {
            error_type: "InvalidInput".into(),
            error_message: format!("the sweeper's input: {error}"),
        })
    }
}

/// How the sweeper runs: how many approvals one run looks at, for how long it may start
/// looking at another, and whether an invoke may set the time.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub batch: usize,
    pub time: std::time::Duration,
    pub accepts_now: bool,
}

/// What a run keeps of its time, at most, for the approval it is on when its budget ends (half
/// its time when it has less than twice that).
pub const FINISHING_TIME: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a run starts sweeps for when its invocation has no deadline ahead (a local
/// emulator, such as `cargo lambda watch`, sends a fixed one in 1970): the template's timeout
/// (50 s) less [`FINISHING_TIME`].
pub const TIME_WITHOUT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

impl Settings {
    /// The settings of a run with `left` before the invocation's deadline (`None`: no deadline
    /// ahead).
    pub fn with_time_left(self, left: Option<std::time::Duration>) -> Self {
        let time = match left {
            Some(left) => left - FINISHING_TIME.min(left / 2),
            None => TIME_WITHOUT_DEADLINE,
        };
        Self { time, ..self }
    }
}

/// The time a run sweeps as of: the clock's, or the input's where that is allowed (never
/// earlier than the clock's: time only moves forward).
fn sweep_time(
    input: &Input,
    clock_now: DateTime<Utc>,
    accepts_now: bool,
) -> Result<DateTime<Utc>, Diagnostic> {
    let refused = |message: String| Diagnostic {
        error_type: "InvalidInput".into(),
        error_message: message,
    };
    let Some(text) = &input.now else {
        return Ok(clock_now);
    };
    if !accepts_now {
        return Err(refused(
            "this sweeper does not take the time from its input (SWEEP_ACCEPTS_NOW is not true)"
                .into(),
        ));
    }
    let now = regate_core::time::parse_rfc3339(text)
        .ok_or_else(|| refused(format!("now {text:?} is not an RFC 3339 time")))?;
    if now < clock_now {
        return Err(refused(format!(
            "now {text} is before the clock's time; a sweep only moves time forward"
        )));
    }
    Ok(now)
}

pub async fn handle<P: Ports>(
    approvals: &Approvals<P>,
    input: Input,
    settings: Settings,
) -> Result<SweepReport, Diagnostic> {
    let limit = input.limit.unwrap_or(settings.batch).min(settings.batch);
    let now = sweep_time(&input, approvals.now(), settings.accepts_now)?;
    let swept = match &input.request_id {
        Some(request_id) => approvals.sweep_request(request_id, now).await,
        None => {
            let budget = SweepBudget {
                items: limit,
                time: settings.time,
            };
            approvals.sweep_at(budget, now).await
        }
    };
    match swept {
        Ok(report) => {
            tracing::info!(
                time_budget_ms = u64::try_from(settings.time.as_millis()).unwrap_or(u64::MAX),
                due = report.due,
                checked = report.checked,
                deferred = report.deferred,
                resumed = report.resumed,
                expired = report.expired,
                waiting = report.waiting,
                reevaluated = report.reevaluated,
                reminded = report.reminded,
                failed = report.failed.len(),
                "sweep done"
            );
            Ok(report)
        }
        Err(error) => {
            tracing::error!(error = %error, "sweep failed");
            Err(regate_aws::diagnostic(error))
        }
    }
}
