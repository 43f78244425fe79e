//! `regate audit verify --report FILE`: the verification as one self-contained HTML page for
//! people (an auditor, a reviewer of the auditor): the summary and verdict, each finding and
//! what it means, a timeline per request, a chart of how long approvals took, and the
//! checkpoints covered. Plain HTML and an inline SVG chart: no script, no external asset.

use std::fmt::Write as _;

use regate_core::audit::{AuditReport, FindingKind, Timeline, WAIT_BUCKETS};
use regate_core::checkpoint::Anchors;

/// What the report says about where the log came from.
pub struct Sources<'a> {
    pub exports: usize,
    pub export: &'a str,
    pub checkpoints: Option<&'a str>,
    pub anchors: Option<&'a Anchors>,
}

/// The report as HTML text.
pub fn render(report: &AuditReport, sources: &Sources<'_>) -> String {
    let counts = &report.counts;
    let (integrity, mismatches) = (report.integrity_findings(), report.mismatches());
    let (verdict, verdict_class) = match (integrity, mismatches) {
        (0, 0) => ("Everything verified".to_string(), "ok"),
        (0, m) => (format!("{m} re-evaluation mismatch(es)"), "warn"),
        (i, m) => (
            format!("{i} integrity finding(s), {m} re-evaluation mismatch(es)"),
            "bad",
        ),
    };
    let mut html = String::with_capacity(64 * 1024);
    html.push_str(HEAD);
    let _ = write!(
        html,
        "<h1>regate audit verify</h1>\n<p class=\"verdict {verdict_class}\" id=\"verdict\">{}</p>\n",
        escape(&verdict)
    );
    html.push_str("<h2>Summary</h2>\n<table class=\"summary\">\n");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
    };
    row("export", sources.export.to_string());
    row("exports", sources.exports.to_string());
    row("requests", counts.requests.to_string());
    row("events", counts.events.to_string());
    row("decisions evaluated again", counts.decisions.to_string());
    row("policy bundles", counts.policies.to_string());
    match sources.checkpoints {
        Some(from) => {
            row(
                "checkpoints",
                format!("{} verified, from {from}", counts.checkpoints),
            );
            row(
                "events newer than the last checkpoint",
                counts.unanchored_events.unwrap_or_default().to_string(),
            );
            row(
                "events older than the first checkpoint",
                counts.predating_checkpoints.unwrap_or_default().to_string(),
            );
        }
        None => row(
            "checkpoints",
            "none given: a chain rewritten with fresh hashes cannot be told".to_string(),
        ),
    }
    row("findings", report.findings.len().to_string());
    html.push_str("</table>\n");

    html.push_str("<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        html.push_str("<p id=\"no-findings\">None.</p>\n");
    } else {
        html.push_str(
            "<table class=\"findings\" id=\"findings\">\n<tr><th>request</th><th>seq</th>\
             <th>kind</th><th>detail</th><th>what it means</th></tr>\n",
        );
        for finding in &report.findings {
            let class = if finding.kind.is_integrity() {
                "bad"
            } else {
                "warn"
            };
            let _ = writeln!(
                html,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&finding.request_id),
                finding.seq.map(|s| s.to_string()).unwrap_or_default(),
                finding.kind,
                escape(&finding.detail),
                escape(meaning(finding.kind))
            );
        }
        html.push_str("</table>\n");
    }

    html.push_str("<h2>Time to decision</h2>\n");
    html.push_str(&wait_chart(report));

    html.push_str("<h2>Checkpoints covered</h2>\n");
    match sources.anchors {
        Some(anchors) => {
            let span = match (anchors.covers_from, anchors.last) {
                (Some(from), Some((number, until))) => format!(
                    "Checkpoints 1 to {number} cover events from {} to {}.",
                    regate_core::time::format_rfc3339_ms(from),
                    regate_core::time::format_rfc3339_ms(until)
                ),
                (None, Some((number, until))) => format!(
                    "The checkpoints up to number {number} cover events until {}; checkpoint 1 \
                     did not verify.",
                    regate_core::time::format_rfc3339_ms(until)
                ),
                _ => "No checkpoint verified.".to_string(),
            };
            let _ = writeln!(
                html,
                "<p id=\"checkpoints\">{} ({} verified, {} requests with signed heads; one every \
                 {} min)</p>",
                escape(&span),
                anchors.checkpoints,
                anchors.heads.len(),
                anchors.cadence.every.num_minutes()
            );
        }
        None => html.push_str("<p id=\"checkpoints\">No checkpoints were given.</p>\n"),
    }

    let _ = writeln!(
        html,
        "<h2>Timelines</h2>\n<p>The requests with findings, then the first {} others by id.</p>",
        report.timelines.iter().filter(|t| !t.flagged).count()
    );
    for timeline in &report.timelines {
        html.push_str(&render_timeline(timeline));
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn render_timeline(timeline: &Timeline) -> String {
    let class = if timeline.flagged {
        "timeline flagged"
    } else {
        "timeline"
    };
    let mut html = format!(
        "<section class=\"{class}\"><h3>{}</h3>\n<ol>\n",
        escape(&timeline.request_id)
    );
    for step in &timeline.steps {
        let at = step
            .at
            .map(regate_core::time::format_rfc3339_ms)
            .unwrap_or_default();
        let outcome = step.outcome.map(|o| format!(" → {o}")).unwrap_or_default();
        let who = step
            .who
            .as_deref()
            .map(|w| format!(" by {w}"))
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<li class=\"{kind}\"><span class=\"seq\">{seq}</span> <b>{kind}</b>{}{} \
             <time>{at}</time></li>",
            escape(&outcome),
            escape(&who),
            kind = step.kind.as_str(),
            seq = step.seq
        );
    }
    html.push_str("</ol></section>\n");
    html
}

/// A bar per [`WAIT_BUCKETS`] bucket, as an inline SVG.
fn wait_chart(report: &AuditReport) -> String {
    let waits = &report.waits;
    let most = waits.counts.iter().copied().max().unwrap_or(0).max(1);
    let (bar, gap, height) = (90u64, 14u64, 160u64);
    let width = (bar + gap) * WAIT_BUCKETS.len() as u64 + gap;
    let mut svg = format!(
        "<svg id=\"wait-chart\" role=\"img\" aria-label=\"requests by time to decision\" \
         width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">\n",
        height + 40,
        height + 40
    );
    for (i, ((_, label), count)) in WAIT_BUCKETS.iter().zip(waits.counts).enumerate() {
        let x = gap + i as u64 * (bar + gap);
        let h = count * (height - 20) / most;
        let y = height - h;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" class=\"bar\"/>\
             <text x=\"{}\" y=\"{}\" class=\"count\">{count}</text>\
             <text x=\"{}\" y=\"{}\" class=\"label\">{label}</text>",
            x + bar / 2,
            y.saturating_sub(4).max(12),
            x + bar / 2,
            height + 18
        );
    }
    svg.push_str("</svg>\n");
    format!(
        "{svg}<p>Requests that waited for approvers, from the evaluation that asked for them to \
         their decision or expiry. Decided at once: {}. Still waiting: {}.</p>\n",
        waits.at_once, waits.open
    )
}

/// What a finding means, for the reader who has to act on it.
fn meaning(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::ItemCount => "A data file holds another number of items than its manifest lists: the export is incomplete or was edited.",
        FindingKind::Unreadable => "An item that is not what its keys say: written by something other than regate, or damaged.",
        FindingKind::KeyMismatch => "An event stored under another request or seq than it names: moved by hand.",
        FindingKind::Altered => "The event's content does not match its hash: it was edited after it was written.",
        FindingKind::ConflictingCopies => "Two different events under one request and seq in overlapping exports: one was changed.",
        FindingKind::MissingEvent => "A seq is missing: an event was deleted.",
        FindingKind::BrokenLink => "An event does not link to the one before it: events were reordered or part of the chain rewritten.",
        FindingKind::NoTerminalEvent => "A request past its timeout never closed: a workflow was stuck or its end deleted.",
        FindingKind::ChangedAfterWrite => "An incremental export shows an item changed or deleted: the log is append-only.",
        FindingKind::PolicyMissing => "No bundle for the revision that decided: the decision cannot be checked.",
        FindingKind::PolicyInvalid => "A stored bundle does not match its revision, does not compile, or has a refused path.",
        FindingKind::InputMismatch => "The decision's input cannot be rebuilt from the chain: the recorded input was not what the chain says.",
        FindingKind::BadSignature => "A checkpoint whose signature does not verify with the pinned key: forged or damaged.",
        FindingKind::CheckpointMissing => "A checkpoint number is missing: one was deleted.",
        FindingKind::CheckpointChain => "A checkpoint does not name its predecessor: the series was spliced.",
        FindingKind::CheckpointAltered => "A checkpoint's heads do not hash to its signed root: its heads were edited.",
        FindingKind::DeletedRequest => "A request a checkpoint signed is not in the export: it was deleted.",
        FindingKind::TruncatedChain => "A chain ends before a checkpoint said it did: its tail was deleted.",
        FindingKind::RewrittenChain => "An event has another hash than a checkpoint signed: the chain was rewritten with fresh hashes.",
        FindingKind::UnanchoredBeforeCheckpoint => "An event dated within what the checkpoints cover is under no signed head: it was added after its time was signed (a made-up request or a late vote), or its write took longer than the settle time.",
        FindingKind::StaleCheckpoints => "The checkpoints stopped more than three periods before the export: nothing signed vouches for what came after.",
        FindingKind::RewrittenCheckpoint => "A checkpoint object has more than one version: it was put again after it was cut. The original was verified.",
        FindingKind::PolicyConflict => "Two different bundles claim one revision: which policy decided is ambiguous.",
        FindingKind::DatedAfterExport => "An event dated after the export was taken: placed ahead so that a later checkpoint would sign it, or written with a wrong clock.",
        FindingKind::OutcomeMismatch => "Evaluated again under its own policy, the decision comes out otherwise.",
    }
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>regate audit report</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: .2rem 0; }
.verdict { font-size: 1.2rem; font-weight: 600; padding: .5rem .8rem; border-radius: 6px; display: inline-block; }
.verdict.ok { background: #e3f6e8; color: #17692e; }
.verdict.warn { background: #fff4d6; color: #7a5200; }
.verdict.bad { background: #fde4e4; color: #9b1c1c; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #eee; vertical-align: top; }
table.summary th { font-weight: 500; color: #555; }
table.findings tr.bad td:first-child { border-left: 4px solid #c62828; }
table.findings tr.warn td:first-child { border-left: 4px solid #d99a00; }
code { font-size: .9em; background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; }
svg .bar { fill: #4a78c2; }
svg text { font-size: 12px; text-anchor: middle; fill: #333; }
section.timeline { border: 1px solid #e5e5e5; border-radius: 6px; padding: .4rem .8rem; margin: .6rem 0; }
section.timeline.flagged { border-color: #c62828; }
section.timeline ol { list-style: none; padding: 0; margin: .2rem 0; }
section.timeline li { padding: .1rem 0; }
section.timeline .seq { display: inline-block; min-width: 1.6rem; color: #888; }
section.timeline time { color: #666; font-size: .9em; margin-left: .4rem; }
li.decided b, li.expired b { color: #17692e; }
li.vote_refused b, li.error b { color: #9b1c1c; }
</style>
</head>
<body>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use regate_core::audit::{AuditCounts, Finding};

    #[test]
    fn a_finding_is_listed_escaped_with_what_it_means() {
        let report = AuditReport {
            counts: AuditCounts {
                requests: 1,
                events: 3,
                ..AuditCounts::default()
            },
            findings: vec![Finding::new(
                "<script>x</script>",
                Some(2),
                FindingKind::UnanchoredBeforeCheckpoint,
                "dated \"then\"",
            )],
            ..AuditReport::default()
        };
        let sources = Sources {
            exports: 1,
            export: "exports/",
            checkpoints: None,
            anchors: None,
        };
        let html = render(&report, &sources);
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<code>unanchored_before_checkpoint</code>"));
        assert!(html.contains("dated &quot;then&quot;"));
        assert!(html.contains("1 integrity finding(s)"));
    }
}
