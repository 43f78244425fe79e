//! A pending approval and what it refers to: the task token that resumes its workflow, the
//! messages that show it, its state, and the voters who click on it. These are the values the
//! ports trade in; the ports themselves are in [`crate::ports`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Evaluation, NotifyTarget};
use crate::policy::EvaluationTime;
use crate::request::Request;
use crate::vote::Vote;

/// How long a closed approval stays in the pending store after its timeout.
pub const KEEP_AFTER_TIMEOUT: chrono::Duration = chrono::Duration::days(1);
/// How long a claim to resume a workflow holds: longer than any function runs (the notifier's
/// timeout is 60 s), so a claim lapses only when its holder is gone, and the sweeper (once a
/// minute) takes the duty over.
pub const RESUME_LEASE: chrono::Duration = chrono::Duration::seconds(90);
/// How long after its deadline an open approval is looked at by the sweeper: the workflow's own
/// timeout path expires it first; the sweeper closes what that path could not (its workflow is
/// gone).
pub const SWEEP_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// When an approval whose sweep failed is looked at again, unless a duty comes sooner.
pub const RETRY_FAILED_SWEEP_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// The chat platforms regate asks approvers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Slack,
    Teams,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Teams => "teams",
        }
    }
}

/// Someone who clicked a button, as their platform knows them: enough to find out who they
/// are ([`crate::ports::ChatPlatform::identify`]) and to answer them privately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub platform: Platform,
    /// The platform's id of the user.
    pub user_id: String,
    /// Where they clicked (a channel or conversation), for a reply only they see.
    pub conversation: Option<String>,
    /// A short-lived handle to open a dialog for them (Slack's `trigger_id`).
    pub trigger: Option<String>,
    /// The workspace or tenant the click came from (Slack's team id, Teams' tenant id).
    pub tenant: Option<String>,
    /// The platform endpoint that serves this voter (Teams' `serviceUrl`).
    pub endpoint: Option<String>,
    /// The id of the message clicked, when the platform says (Teams: the card's activity id).
    pub message: Option<String>,
}

/// Who a voter is, by their platform account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// A person, by their e-mail addresses (Teams knows an e-mail address and a UPN, which
    /// may differ): the first is the one shown; the request's approvers are matched against
    /// each.
    Person(Vec<String>),
    /// An account that may not vote whoever it is (deactivated, a bot, a guest, from another
    /// organisation), with the identity when the platform gave one.
    Ineligible {
        identity: Option<String>,
        reason: String,
    },
    /// The platform cannot say who it is (no e-mail address visible to regate).
    Unknown,
}

/// A Step Functions task token. It can resume a workflow, so it is never printed: `Debug`
/// shows only its length, and the value is reached through [`TaskToken::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskToken(String);

impl TaskToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskToken(<{} chars, redacted>)", self.0.len())
    }
}

/// Where an approval message was posted, so it can be updated later. A direct message also
/// names the person (`user`) whose target it was posted for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum MessageRef {
    Slack {
        channel: String,
        ts: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    Teams {
        conversation: String,
        activity_id: String,
        service_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
}

impl MessageRef {
    pub fn platform(&self) -> Platform {
        match self {
            Self::Slack { .. } => Platform::Slack,
            Self::Teams { .. } => Platform::Teams,
        }
    }

    /// The target it was posted to, as [`NotifyTarget::key`] names it.
    pub fn target_key(&self) -> String {
        match self.clone() {
            Self::Slack {
                user: Some(user), ..
            } => NotifyTarget::SlackUser { user },
            Self::Slack { channel, .. } => NotifyTarget::Slack { channel },
            Self::Teams {
                user: Some(user), ..
            } => NotifyTarget::TeamsUser { user },
            Self::Teams { conversation, .. } => NotifyTarget::Teams { conversation },
        }
        .key()
    }

    /// Where it is: the Slack channel or the Teams conversation.
    pub fn place(&self) -> &str {
        match self {
            Self::Slack { channel, .. } => channel,
            Self::Teams { conversation, .. } => conversation,
        }
    }

    /// The message's own id in its place (Slack's `ts`, Teams' activity id).
    pub fn id(&self) -> &str {
        match self {
            Self::Slack { ts, .. } => ts,
            Self::Teams { activity_id, .. } => activity_id,
        }
    }

    /// Whether this message was posted for `target` (a retried step does not post it again).
    pub fn is_for(&self, target: &NotifyTarget) -> bool {
        self.target_key() == target.key()
    }

    /// Where the message is, as the `notified` event records it (no service URL: it is not
    /// needed to find the message in the platform, and the log is exported).
    pub fn log_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        if let Self::Slack {
            user: Some(user), ..
        }
        | Self::Teams {
            user: Some(user), ..
        } = self
        {
            fields.insert("user".into(), user.as_str().into());
        }
        let (place, id) = match self {
            Self::Slack { channel, ts, .. } => (("channel", channel), ("ts", ts)),
            Self::Teams {
                conversation,
                activity_id,
                ..
            } => (("conversation", conversation), ("activity_id", activity_id)),
        };
        for (key, value) in [place, id] {
            fields.insert(key.into(), value.as_str().into());
        }
        fields
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalState {
    /// Whether the approvers' votes (or time, through the policy) decided it: approved or
    /// rejected, an outcome its workflow must be told.
    pub fn is_decision(self) -> bool {
        matches!(self, Self::Approved | Self::Rejected)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One open (or closed) approval: what the callback needs to count a vote and resume the
/// workflow. Lives in the pending store, never in the decision log.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    pub request_id: String,
    /// The Step Functions execution that opened it and waits on `task_token`. Another execution
    /// reusing the request id never touches it (`RequestIdInUse`).
    pub execution_id: String,
    pub task_token: TaskToken,
    pub request: Request,
    pub evaluation: Evaluation,
    pub messages: Vec<MessageRef>,
    /// Targets ([`NotifyTarget::key`]) a message was about to be posted to: one with no
    /// message in `messages` may have been posted by an attempt that did not live to record it.
    pub posting: Vec<String>,
    pub votes: Vec<Vote>,
    pub state: ApprovalState,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    /// When the store may forget the item (DynamoDB TTL); after the workflow's own timeout.
    pub expires_at: DateTime<Utc>,
    /// Who cast the deciding vote, and when the request was closed.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Which attempt closed it: a retried close recognises its own win by this.
    pub closed_by: Option<String>,
    /// Whether the workflow has taken the outcome (or was found no longer waiting). A closed,
    /// unresumed approval is a duty every path that meets it carries out.
    pub resumed: bool,
    /// How many paths have claimed that duty so far (the closing write is the first claim), and
    /// until when the latest claim holds. Only the holder of a live claim calls Step Functions,
    /// so many paths meeting one closed approval at once resume it once.
    pub resume_claims: u64,
    pub resume_until: Option<DateTime<Utc>>,
    /// Whether the requester has been told how it ended (or regate gave up telling them): a
    /// duty of a resumed approval until then (see [`Self::owes_tell`]).
    pub requester_told: bool,
    /// How many paths have claimed the duty to tell the requester, and until when the latest
    /// claim holds: of many paths meeting it at once, one sends the message.
    pub tell_claims: u64,
    pub tell_until: Option<DateTime<Utc>>,
    /// The largest reminder offset (seconds after `created_at`) already taken care of; 0 before
    /// the first reminder.
    pub reminded_through: u64,
    /// The largest re-evaluation offset already taken care of; 0 before the first.
    pub reevaluated_through: u64,
    /// When the sweeper made the stored `evaluation` (None: the notifier's opening one).
    pub evaluated_at: Option<DateTime<Utc>>,
    /// When the sweeper next needs to look at it (see [`Self::next_due`]); None once its
    /// workflow has the outcome and its requester has been told. Every write that changes what is due stores it in the same
    /// conditional write, and the sweeper reads only what is due.
    pub due_at: Option<DateTime<Utc>>,
}

impl PendingApproval {
    /// A new approval of `request` for workflow `execution_id`, which waits on `token` since
    /// `now`: pending at version 1, with no message, vote or claim yet. It is kept
    /// [`KEEP_AFTER_TIMEOUT`] past the evaluation's timeout.
    pub fn opened(
        request: &Request,
        evaluation: &Evaluation,
        token: &TaskToken,
        execution_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let timeout = chrono::Duration::seconds(
            i64::try_from(evaluation.decision.timeout_seconds).unwrap_or(i64::MAX / 2_000_000),
        );
        let mut opened = Self {
            request_id: request.id.clone(),
            execution_id: execution_id.to_string(),
            task_token: token.clone(),
            request: request.clone(),
            evaluation: evaluation.clone(),
            messages: Vec::new(),
            posting: Vec::new(),
            votes: Vec::new(),
            state: ApprovalState::Pending,
            version: 1,
            created_at: now,
            expires_at: now + timeout + KEEP_AFTER_TIMEOUT,
            decided_by: None,
            decided_at: None,
            closed_by: None,
            resumed: false,
            resume_claims: 0,
            resume_until: None,
            requester_told: false,
            tell_claims: 0,
            tell_until: None,
            reminded_through: 0,
            reevaluated_through: 0,
            evaluated_at: None,
            due_at: None,
        };
        opened.due_at = opened.next_due(now);
        opened
    }

    /// The time an evaluation of this approval at `now` uses: never earlier than the stored
    /// evaluation's, so a function whose clock runs behind the sweeper's cannot undo an
    /// escalation by evaluating in the past.
    pub fn evaluation_time(&self, now: DateTime<Utc>) -> EvaluationTime {
        let now = self.evaluated_at.map_or(now, |at| at.max(now));
        EvaluationTime::since(self.created_at, now)
    }

    /// When the workflow stops waiting: the opening evaluation's timeout after `created_at`.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.expires_at - KEEP_AFTER_TIMEOUT
    }

    /// Closed, but the workflow has not been told.
    pub fn owes_resume(&self) -> bool {
        self.state != ApprovalState::Pending && !self.resumed
    }

    /// The workflow has the outcome, but the requester has not been told it.
    pub fn owes_tell(&self) -> bool {
        self.resumed && !self.requester_told
    }

    /// Whether anyone still owes this approval something: a close, a resume or a message to
    /// its requester. What owes nothing is never due.
    pub fn owes_anything(&self) -> bool {
        !self.resumed || self.owes_tell()
    }

    /// The Step Functions console page of the workflow, when its execution id is an ARN
    /// (`arn:<partition>:states:<region>:<account>:execution:<machine>:<name>`).
    pub fn workflow_url(&self) -> Option<String> {
        let arn = &self.execution_id;
        let mut parts = arn.split(':');
        let (Some("arn"), Some(partition), Some("states"), Some(region)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let console = match partition {
            "aws" => "console.aws.amazon.com",
            "aws-us-gov" => "console.amazonaws-us-gov.com",
            "aws-cn" => "console.amazonaws.cn",
            _ => return None,
        };
        // Only characters a URL carries as they are (execution names may hold others).
        let safe = |text: &str, more: &str| {
            !text.is_empty()
                && (text.chars()).all(|c| c.is_ascii_alphanumeric() || more.contains(c))
        };
        (safe(region, "-") && safe(arn, "-_:.@+=")).then(|| {
            format!("https://{region}.{console}/states/home?region={region}#/v2/executions/details/{arn}")
        })
    }

    /// When this approval next needs the sweeper, as a path that looks at it (or writes it) at
    /// `now` sees it; `None` once its workflow has the outcome.
    ///
    /// A resumed one owes its requester the outcome when the claim of the path telling them
    /// lapses (at once when none holds it). A closed one owes its resume when the claim of the
    /// path resuming it lapses (at once when none holds it). An open one is due at the earliest of:
    /// - its next reminder and re-evaluation offsets (one that has passed and is not yet taken
    ///   care of keeps it due; `details.not_after` is a re-evaluation offset of the default
    ///   policy);
    /// - the settle time of its last vote, while that is ahead (a click that stored a deciding
    ///   vote may die before closing; the sweeper closes on stored votes after it);
    /// - its deadline plus [`SWEEP_GRACE`], while that is ahead, and every [`SWEEP_GRACE`]
    ///   after (the workflow's own timeout expires it first; the sweeper expires what that
    ///   path could not);
    /// - while a target of a re-evaluation has no message yet: [`RESUME_LEASE`] after the
    ///   re-evaluation (the sweep that stored it may have died before posting), and every
    ///   [`RETRY_FAILED_SWEEP_AFTER`] after.
    pub fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.resumed {
            return self.owes_tell().then(|| self.tell_until.unwrap_or(now));
        }
        if self.state != ApprovalState::Pending {
            return Some(self.resume_until.unwrap_or(now));
        }
        let decision = &self.evaluation.decision;
        let next_offset = |offsets: &[u64], through: u64| {
            let offset = offsets.iter().copied().filter(|o| *o > through).min()?;
            let offset = chrono::Duration::try_seconds(i64::try_from(offset).ok()?)?;
            self.created_at.checked_add_signed(offset)
        };
        let settle = self
            .votes
            .iter()
            .filter_map(|vote| crate::time::parse_rfc3339(&vote.at))
            .max()
            .map(|at| at + RESUME_LEASE)
            .filter(|settle| *settle > now);
        let overdue = self.deadline() + SWEEP_GRACE;
        let unposted = self.evaluated_at.filter(|_| {
            decision
                .notify
                .iter()
                .any(|target| !self.messages.iter().any(|m| m.is_for(target)))
        });
        let post_again = unposted.map(|at| {
            let at = at + RESUME_LEASE;
            if at > now {
                at
            } else {
                now + RETRY_FAILED_SWEEP_AFTER
            }
        });
        [
            post_again,
            next_offset(&decision.remind_after_seconds, self.reminded_through),
            next_offset(&decision.reevaluate_after_seconds, self.reevaluated_through),
            settle,
            Some(if overdue > now {
                overdue
            } else {
                now + SWEEP_GRACE
            }),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When this open approval is due after `change` is made to it at `now`: what a write of
    /// that change stores with it (`now` for one the change leaves nothing due: the sweeper
    /// then finds nothing to do, and writes nothing).
    pub fn due_after(&self, now: DateTime<Utc>, change: impl FnOnce(&mut Self)) -> DateTime<Utc> {
        let mut changed = self.clone();
        change(&mut changed);
        changed.next_due(now).unwrap_or(now)
    }
}

/// An approval the sweeper has to look at, as its index lists it (the item itself is read
/// after: the index may lag behind it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueApproval {
    pub request_id: String,
    pub due_at: DateTime<Utc>,
}

/// The answer to a conditional write on a pending approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional {
    /// The write happened; the item as it is now.
    Done(Box<PendingApproval>),
    /// Someone else changed the item first, or it is no longer in the required state; the
    /// item as it is now (None if it does not exist).
    Lost(Option<Box<PendingApproval>>),
}

/// How a pending approval closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    pub state: ApprovalState,
    pub evaluation: Evaluation,
    pub decided_by: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// Names this attempt (see [`PendingApproval::closed_by`]).
    pub closed_by: String,
    /// Set when closing needs no resume (the workflow itself timed out).
    pub resumed: bool,
    /// The closing attempt claims the resume until then (see [`PendingApproval::resume_claims`]).
    pub resume_until: DateTime<Utc>,
}

/// How a closed approval ended, for its requester, in a direct message.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeNotice<'a> {
    /// The approval as it ended, with its closing evaluation.
    pub approval: &'a PendingApproval,
}

impl OutcomeNotice<'_> {
    /// The approval as its messages show it now.
    pub fn view(&self) -> ApprovalView<'_> {
        ApprovalView {
            approval: self.approval,
            evaluation: &self.approval.evaluation,
        }
    }
}

/// A reminder to the approvers of an open approval, posted in each message's thread.
#[derive(Debug, Clone)]
pub struct Reminder<'a> {
    pub approval: &'a PendingApproval,
    /// The eligible approvers who have not voted.
    pub waiting_on: Vec<String>,
    /// How long until the request expires.
    pub left: chrono::Duration,
}

/// What people see about an approval, whatever the platform renders it as.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalView<'a> {
    pub approval: &'a PendingApproval,
    /// The latest evaluation (with every counted vote).
    pub evaluation: &'a Evaluation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_knows_the_target_it_was_posted_to_on_either_platform() {
        let teams = MessageRef::Teams {
            conversation: "19:approvals@thread.tacv2".into(),
            activity_id: "1700000000001".into(),
            service_url: "https://smba.trafficmanager.net/emea/".into(),
            user: None,
        };
        let target = NotifyTarget::Teams {
            conversation: "19:approvals@thread.tacv2".into(),
        };
        assert_eq!(teams.target_key(), "teams:19:approvals@thread.tacv2");
        assert!(teams.is_for(&target));
        let slack = MessageRef::Slack {
            channel: "C0PAYMENTS".into(),
            ts: "1.2".into(),
            user: None,
        };
        assert!(!slack.is_for(&target));
        assert!(slack.is_for(&NotifyTarget::Slack {
            channel: "C0PAYMENTS".into()
        }));
        // A direct message is for its person, not for the channel it happens to be in.
        let direct = MessageRef::Slack {
            channel: "D0ERIN".into(),
            ts: "1.3".into(),
            user: Some("Erin@example.com".into()),
        };
        assert!(direct.is_for(&NotifyTarget::SlackUser {
            user: "erin@example.com".into()
        }));
        assert!(!direct.is_for(&NotifyTarget::Slack {
            channel: "D0ERIN".into()
        }));
        assert_eq!(direct.log_fields()["user"], "Erin@example.com");
    }

    #[test]
    fn a_task_token_never_shows_in_debug_output() {
        let token = TaskToken::new("AQCEAAAAKgAAAA-secret-token");
        let printed = format!("{token:?} {:?}", Some(&token));
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("27 chars"));
    }
}
