//! The functions' log lines, as Lambda's advanced logging controls ask for them: JSON when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, at the level of `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`,
//! else INFO). Each line carries the invocation's span, whose `requestId` is Lambda's request
//! id. A level may also be given per target (`info,regate_aws=debug`), without regular
//! expressions: their engine would be a fifth of a function's zip.
//!
//! Each invocation ends with one `invocation timing` line: its total time, the time it waited
//! on DynamoDB, Step Functions, Slack and Teams, its own time (the rest), and the CPU time the
//! process used meanwhile.

use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, LevelFilter, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
    let timed = filter_fn(|metadata| metadata.name() == INVOCATION_SPAN || is_round_trip(metadata));
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(
            InvocationTiming {
                function: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
            }
            .with_filter(timed),
        )
        .try_init();
}

/// The span lambda_runtime opens around each invocation, with Lambda's `requestId`.
const INVOCATION_SPAN: &str = "Lambda runtime invoke";

/// A span is a round trip to another service when it names one in `rpc.service`: the AWS SDK's
/// span around each operation (DynamoDB, Step Functions, ...) and regate-chat's around each
/// Slack or Teams call.
fn is_round_trip(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.fields().field("rpc.service").is_some()
}

/// Times each invocation: when its span closes, one INFO line `invocation timing` gives the
/// whole invocation (`total_us`), the time spent waiting on other services (`round_trip_us`,
/// the union of its round-trip spans, so calls made side by side count once) and the rest,
/// the function's own work (`own_us`), which on a busy machine includes waits for a core. The
/// process's CPU time over the invocation (`cpu_us`; a function instance takes one invocation at
/// a time) counts all its work, the SDK's signing and parsing inside the round trips included.
/// `trips` names each round trip, `service.method` (`DynamoDB.GetItem,Slack.users.info`).
struct InvocationTiming {
    /// The function's name, on each timing line.
    function: String,
}

struct Invocation {
    started: Instant,
    cpu_started: Duration,
    request_id: String,
    /// Its round trips, in the order they ended.
    trips: Vec<Trip>,
}

/// A round trip under way: when it started, and its `service.method`.
struct TripStarted {
    at: Instant,
    name: String,
}

/// One round trip of an invocation: when it ran, and its `service.method`.
struct Trip {
    started: Instant,
    ended: Instant,
    name: String,
}

impl<S> Layer<S> for InvocationTiming
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if attrs.metadata().name() == INVOCATION_SPAN {
            let mut request_id = RequestId::default();
            attrs.record(&mut request_id);
            span.extensions_mut().insert(Invocation {
                started: Instant::now(),
                cpu_started: process_cpu_time(),
                request_id: request_id.0,
                trips: Vec::new(),
            });
        } else if is_round_trip(attrs.metadata()) {
            let mut name = TripName::default();
            attrs.record(&mut name);
            span.extensions_mut().insert(TripStarted {
                at: Instant::now(),
                name: format!("{}.{}", name.service, name.method),
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let ended = Instant::now();
        let cpu_ended = process_cpu_time();
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let trip = span.extensions_mut().remove::<TripStarted>();
        if let Some(TripStarted { at, name }) = trip {
            for ancestor in span.scope().skip(1) {
                if let Some(invocation) = ancestor.extensions_mut().get_mut::<Invocation>() {
                    invocation.trips.push(Trip {
                        started: at,
                        ended,
                        name,
                    });
                    break;
                }
            }
            return;
        }
        let Some(invocation) = span.extensions_mut().remove::<Invocation>() else {
            return;
        };
        drop(span);
        let total = ended.duration_since(invocation.started);
        let waiting = union_length(
            invocation
                .trips
                .iter()
                .map(|t| (t.started, t.ended))
                .collect(),
        );
        let names: Vec<&str> = invocation.trips.iter().map(|t| t.name.as_str()).collect();
        // Whole microseconds first, so that the line adds up.
        let (total_us, round_trip_us) = (total.as_micros() as u64, waiting.as_micros() as u64);
        tracing::info!(
            function = %self.function,
            request_id = %invocation.request_id,
            total_us,
            round_trip_us,
            own_us = total_us.saturating_sub(round_trip_us),
            cpu_us = cpu_ended.saturating_sub(invocation.cpu_started).as_micros() as u64,
            round_trips = invocation.trips.len(),
            trips = %names.join(","),
            "invocation timing"
        );
    }
}

/// CPU time used so far by all of the process's threads.
fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}

/// A round trip's `rpc.service` and `rpc.method`.
#[derive(Default)]
struct TripName {
    service: String,
    method: String,
}

impl Visit for TripName {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "rpc.service" => self.service = value.to_string(),
            "rpc.method" => self.method = value.to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

#[derive(Default)]
struct RequestId(String);

impl Visit for RequestId {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "requestId" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "requestId" {
            self.0 = format!("{value:?}").trim_matches('"').to_string();
        }
    }
}

/// The time covered by at least one of `intervals`.
fn union_length(mut intervals: Vec<(Instant, Instant)>) -> Duration {
    intervals.sort_by_key(|(start, _)| *start);
    let mut covered = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((from, to)) if start <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                covered += to.duration_since(from);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((from, to)) = current {
        covered += to.duration_since(from);
    }
    covered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_levels_and_per_target_levels_parse() {
        for text in ["info", "debug", "warn,regate_aws=debug", "trace"] {
            assert!(text.parse::<Targets>().is_ok(), "{text}");
        }
    }

    #[test]
    fn overlapping_round_trips_count_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let trips = vec![
            (at(10), at(20)),
            (at(15), at(30)),
            (at(40), at(45)),
            (at(0), at(1)),
        ];
        assert_eq!(union_length(trips), Duration::from_millis(26));
        assert_eq!(union_length(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn an_invocation_is_timed_with_its_round_trips_apart() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_writer(move || Writer(sink.clone()))
                    .with_filter(LevelFilter::INFO),
            )
            .with(
                InvocationTiming {
                    function: "callback".into(),
                }
                .with_filter(filter_fn(|m| {
                    m.name() == INVOCATION_SPAN || is_round_trip(m)
                })),
            );
        tracing::subscriber::with_default(subscriber, || {
            let invocation = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _entered = invocation.enter();
            // 10 ms of work, then 30 ms waiting on a round trip.
            let working = process_cpu_time();
            while process_cpu_time().saturating_sub(working) < Duration::from_millis(10) {
                std::hint::black_box(working);
            }
            let trip = tracing::debug_span!(
                "round_trip",
                "rpc.service" = "Slack",
                "rpc.method" = "chat.update"
            );
            let guard = trip.enter();
            std::thread::sleep(Duration::from_millis(30));
            drop(guard);
            drop(trip);
        });
        let text = String::from_utf8(lines.lock().map(|l| l.clone()).unwrap_or_default())
            .unwrap_or_default();
        let field = |name: &str| -> u64 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX)
        };
        assert!(text.contains("invocation timing"), "{text}");
        assert!(text.contains("request_id=req-1"), "{text}");
        assert!(text.contains("function=callback"), "{text}");
        assert_eq!(field("round_trips"), 1, "{text}");
        assert!(text.contains("trips=Slack.chat.update"), "{text}");
        assert!(field("round_trip_us") >= 30_000, "{text}");
        // The trip is not the invocation's own time (a busy machine may add to either).
        assert!(field("own_us") < field("round_trip_us"), "{text}");
        assert!(field("cpu_us") >= 10_000, "{text}");
        assert_eq!(
            field("total_us"),
            field("round_trip_us") + field("own_us"),
            "{text}"
        );
    }

    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
