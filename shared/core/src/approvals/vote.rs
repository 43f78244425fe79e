//! A vote: who clicked, whether the policy and the hard rules let it count, and storing it on
//! the approval version it was checked against; a counted vote goes on to `close`.

use super::close::Closer;
use super::{attempt_tag, ApprovalError, Approvals, Closed};
use crate::decision::Evaluation;
use crate::event::EventDraft;
use crate::event::EventKind;
use crate::metrics::{Measurement, Metrics, Refusal};
use crate::pending::{
    ApprovalState, Conditional, Identified, MessageRef, PendingApproval, Platform, Voter,
};
use crate::policy::PreparedRequest;
use crate::ports::{ChatPlatform, Clock, PendingStore, Ports};
use crate::rules::normalize;
use crate::vote::{Ballot, Choice, Vote};

/// How many times a click tries to store its vote. Each lost try means another vote or a close
/// was stored first (someone made progress), so a click loses about as many times as other
/// votes arrive at once; the bound only keeps a broken store from looping.
const VOTE_ATTEMPTS: usize = 64;

/// What became of a vote.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteResult {
    /// The vote was recorded. `closed` is set when it decided the request.
    Counted {
        approval: PendingApproval,
        evaluation: Box<Evaluation>,
        closed: Option<Closed>,
    },
    /// An eligible voter's rejection needs a reason, and the ballot had none: ask for one.
    /// Nothing was recorded.
    ReasonRequired { approval: PendingApproval },
    /// The vote does not count; `reason` is for the voter.
    Refused {
        reason: String,
        approval: PendingApproval,
    },
    /// The request no longer takes votes.
    AlreadyDecided { approval: PendingApproval },
    /// No approval is open under that id.
    Unknown,
    /// The voter's platform account has no identity regate can see (an e-mail address), so the
    /// vote cannot be matched against the policy's approvers. Nothing was recorded.
    Unidentified,
    /// No policy is loaded (the function's first load failed), so no vote can be checked.
    /// Nothing was recorded.
    PolicyUnavailable,
}

impl VoteResult {
    /// What the voter is told privately when their vote does not count.
    pub fn explanation(&self) -> Option<String> {
        match self {
            Self::Counted {
                closed: Some(Closed { resumed: false, .. }),
                ..
            } => Some(
                "Your vote decided this request; regate is still handing the decision to its \
                 workflow (which may have timed out), and the message will show how it ends."
                    .into(),
            ),
            Self::Counted { .. } => None,
            Self::ReasonRequired { .. } => Some("Give a reason for the rejection.".into()),
            Self::Refused { reason, .. } => Some(format!("Your vote was not counted: {reason}.")),
            Self::AlreadyDecided { approval } => Some(match approval.state {
                ApprovalState::Expired => {
                    "This request has expired; votes no longer count.".to_string()
                }
                ApprovalState::Pending => "This request is already decided and regate is \
                     closing it; your vote was not counted."
                    .to_string(),
                state => format!(
                    "This request is already decided ({}); your vote was not counted.",
                    state.as_str()
                ),
            }),
            Self::Unknown => {
                Some("regate knows no open request with this id; it may have expired.".into())
            }
            Self::Unidentified => Some(
                "regate cannot see the e-mail address of your account, so it cannot count your vote."
                    .into(),
            ),
            Self::PolicyUnavailable => Some(
                "regate cannot check votes right now: its policy could not be loaded. Your vote \
                 was not recorded; please try again in a few minutes."
                    .into(),
            ),
        }
    }
}

impl<P: Ports> Approvals<P> {
    /// A button click: the vote of whoever clicked, answered privately when it does not count,
    /// or with a request for a reason when their rejection needs one.
    pub async fn click(
        &self,
        voter: &Voter,
        request_id: &str,
        choice: Choice,
    ) -> Result<VoteResult, ApprovalError> {
        let result = self.vote_as(voter, request_id, choice, None).await?;
        match &result {
            VoteResult::ReasonRequired { approval } => {
                let asked = self.chat.ask_reason(voter, approval).await;
                asked.map_err(|e| ApprovalError::Chat(self.chat_failed(voter.platform, e)))?
            }
            other => {
                if let Some(text) = other.explanation() {
                    self.tell(voter, &text).await;
                }
            }
        }
        Ok(result)
    }

    /// The vote of whoever clicked, as their platform account identifies them, cast now.
    pub async fn vote_as(
        &self,
        voter: &Voter,
        request_id: &str,
        choice: Choice,
        reason: Option<String>,
    ) -> Result<VoteResult, ApprovalError> {
        if let Err(error) = self.policy.current() {
            tracing::error!(error = %error, request_id, "a vote arrived with no policy loaded");
            return Ok(VoteResult::PolicyUnavailable);
        }
        let identified = self.chat.identify(voter).await;
        let identified =
            identified.map_err(|e| ApprovalError::Chat(self.chat_failed(voter.platform, e)))?;
        let identity = match identified {
            Identified::Person(addresses) => {
                match self.address_to_count(request_id, addresses).await? {
                    Some(address) => address,
                    None => return Ok(self.unidentified(voter)),
                }
            }
            Identified::Unknown => return Ok(self.unidentified(voter)),
            Identified::Ineligible { identity, reason } => {
                let who = identity
                    .unwrap_or_else(|| format!("{}:{}", voter.platform.as_str(), voter.user_id));
                return self
                    .refuse_account(request_id, &who, voter, choice, reason)
                    .await;
            }
        };
        let ballot = Ballot {
            request_id: request_id.to_string(),
            voter: identity,
            choice,
            reason,
            platform: voter.platform,
            place: voter.conversation.clone(),
            message: voter.message.clone(),
            at: self.clock.now(),
        };
        self.vote(&ballot).await
    }

    /// Which of a person's addresses votes: the one the request lists among its approvers,
    /// or else the first.
    async fn address_to_count(
        &self,
        request_id: &str,
        addresses: Vec<String>,
    ) -> Result<Option<String>, ApprovalError> {
        if addresses.len() > 1 {
            if let Some(approval) = self.load(request_id).await? {
                let approvers = &approval.evaluation.decision.approvers;
                let listed = addresses.iter().find(|address| {
                    approvers
                        .iter()
                        .any(|approver| normalize(approver) == normalize(address))
                });
                if let Some(address) = listed {
                    return Ok(Some(address.clone()));
                }
            }
        }
        Ok(addresses.into_iter().next())
    }

    /// A click from an account that may not vote: logged as refused, whoever it claims to be.
    async fn refuse_account(
        &self,
        request_id: &str,
        who: &str,
        voter: &Voter,
        choice: Choice,
        reason: String,
    ) -> Result<VoteResult, ApprovalError> {
        let Some(approval) = self.load(request_id).await? else {
            return Ok(VoteResult::Unknown);
        };
        let ballot = Ballot {
            request_id: request_id.to_string(),
            voter: who.to_string(),
            choice,
            reason: None,
            platform: voter.platform,
            place: voter.conversation.clone(),
            message: voter.message.clone(),
            at: self.clock.now(),
        };
        self.refuse(&ballot, reason, approval, Refusal::Account)
            .await
    }

    /// Closes `approval` when the votes it holds decide it as of the ballot's time but did not
    /// as of the last vote's: time decided it, no click is closing it and the sweeper closes
    /// only what the votes decide on their own, so this click closes it, as time's decision.
    /// Returns the approval as it is now.
    async fn close_if_time_decided(
        &self,
        prepared: &PreparedRequest,
        approval: PendingApproval,
        ballot: &Ballot,
    ) -> Result<PendingApproval, ApprovalError> {
        let last_vote = approval
            .votes
            .iter()
            .filter_map(|vote| crate::time::parse_rfc3339(&vote.at))
            .max();
        let Some(last_vote) = last_vote else {
            return Ok(approval);
        };
        let then = approval.evaluation_time(last_vote);
        if self
            .policy
            .current()?
            .evaluate(prepared, &approval.votes, then)?
            .decision
            .outcome
            .is_final()
        {
            return Ok(approval);
        }
        let closer = Closer {
            decided_by: None,
            attempt: format!("time:click:{}", attempt_tag()),
            reevaluation: None,
        };
        let closed = self
            .close_if_decided(prepared, approval.clone(), closer, ballot.at)
            .await?;
        if let VoteResult::Counted { approval: now, .. } = closed {
            return Ok(now);
        }
        Ok(approval)
    }

    /// A click from an account whose identity regate cannot see: nothing is recorded.
    fn unidentified(&self, voter: &Voter) -> VoteResult {
        self.metrics.record(Measurement::vote_refused(
            voter.platform,
            Refusal::Unidentified,
        ));
        VoteResult::Unidentified
    }

    /// Tells a voter something privately; best effort (the answer to the click still goes out).
    async fn tell(&self, voter: &Voter, text: &str) {
        if let Err(error) = self.chat.tell(voter, text).await {
            let error = self.chat_failed(voter.platform, error);
            tracing::warn!(error = %error, "could not tell the voter privately");
        }
    }

    /// Counts a ballot if the policy and the hard rules allow it, closes the request (resuming
    /// the workflow exactly once) when it decides it, and shows the result on every message.
    pub async fn vote(&self, ballot: &Ballot) -> Result<VoteResult, ApprovalError> {
        let result = self.count(ballot).await?;
        if result == VoteResult::Unknown {
            self.metrics.record(Measurement::vote_refused(
                ballot.platform,
                Refusal::UnknownRequest,
            ));
        }
        if let VoteResult::Counted {
            approval,
            evaluation,
            ..
        } = &result
        {
            self.refresh(approval, evaluation).await;
        }
        Ok(result)
    }

    async fn refuse(
        &self,
        ballot: &Ballot,
        reason: String,
        approval: PendingApproval,
        why: Refusal,
    ) -> Result<VoteResult, ApprovalError> {
        self.metrics
            .record(Measurement::vote_refused(ballot.platform, why));
        // One refusal a voter and choice is a step of the decision; the same click again (a
        // guest clicking in a loop, say) is answered and traced, not appended: it would grow
        // the chain and compete with the appends that matter.
        let voter = normalize(&ballot.voter);
        let choice = ballot.choice.as_str();
        let draft = EventDraft::new(EventKind::VoteRefused)
            .actor(&voter)
            .platform(ballot.platform.as_str())
            .reasons(vec![reason.clone()])
            .data("vote", choice)
            .once(format!("refused#{voter}#{choice}"));
        if !self.append(&ballot.request_id, draft).await? {
            tracing::info!(request_id = %ballot.request_id, voter, vote = choice, reason, "a refused click again: answered, already logged");
        }
        Ok(VoteResult::Refused { reason, approval })
    }

    /// A ballot on a closed request, or on one the votes already counted decide: carries out a
    /// resume still owed, then refuses it. It changes nothing, so it is not a step of the
    /// decision: the voter is told privately and the click is traced in the function's log, not
    /// appended to the request's chain (a storm of late clicks would otherwise queue on that
    /// chain and answer after Slack's 3 s).
    async fn already_decided(
        &self,
        ballot: &Ballot,
        approval: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        self.metrics.record(Measurement::vote_refused(
            ballot.platform,
            Refusal::AlreadyDecided,
        ));
        let approval = self.finish(approval, None).await?.0;
        tracing::info!(
            request_id = %approval.request_id,
            voter = %normalize(&ballot.voter),
            vote = ballot.choice.as_str(),
            state = approval.state.as_str(),
            "late click refused: the request is already decided"
        );
        Ok(VoteResult::AlreadyDecided { approval })
    }

    async fn count(&self, ballot: &Ballot) -> Result<VoteResult, ApprovalError> {
        let request_id = ballot.request_id.as_str();
        let Some(mut approval) = self.load(request_id).await? else {
            return Ok(VoteResult::Unknown);
        };
        let voter = normalize(&ballot.voter);
        let prepared = PreparedRequest::new(approval.request.clone())?;
        let reason = ballot
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        // A vote is stored only on the approval it was checked against (its version): one that
        // lost to another vote is checked again with that vote counted, so no vote is stored
        // once the votes before it decide the request.
        for _ in 0..VOTE_ATTEMPTS {
            // A repeated identical vote completes what its first click may have left undone
            // (the log entry, closing, resuming); the log's idempotency keys keep it from
            // counting twice. So does a vote whose write committed but whose answer was lost.
            let same_vote = approval
                .votes
                .iter()
                .find(|v| normalize(&v.voter) == voter && v.vote == ballot.choice)
                .cloned();
            if let Some(vote) = same_vote {
                return self.complete(ballot, &vote, approval).await;
            }
            if approval.state != ApprovalState::Pending {
                return self.already_decided(ballot, approval).await;
            }
            if let Some(refused) = elsewhere(ballot, &approval) {
                return self
                    .refuse(ballot, refused, approval, Refusal::Elsewhere)
                    .await;
            }
            let time = approval.evaluation_time(ballot.at);
            // The votes already counted decide the request and the vote that decided it is
            // closing it: like a click on a closed request, this one changes nothing and is not
            // appended to the chain (in a burst of clicks most arrive in this moment). This is
            // the decision's own verdict, so it holds whatever the policy's `vote` rule checks.
            if !approval.votes.is_empty() {
                let evaluation =
                    self.policy
                        .current()?
                        .evaluate(&prepared, &approval.votes, time)?;
                if evaluation.decision.outcome.is_final() {
                    let approval = self
                        .close_if_time_decided(&prepared, approval, ballot)
                        .await?;
                    return self.already_decided(ballot, approval).await;
                }
            }
            let check = self.policy.current()?.check_vote(
                &prepared,
                &approval.votes,
                &ballot.voter,
                time,
            )?;
            if !check.allowed {
                return self
                    .refuse(ballot, check.reason, approval, Refusal::Policy)
                    .await;
            }
            if ballot.choice == Choice::Reject
                && reason.is_none()
                && approval.evaluation.decision.reject_reason_required
            {
                return Ok(VoteResult::ReasonRequired { approval });
            }
            let vote = Vote {
                voter: voter.clone(),
                vote: ballot.choice,
                reason: reason.clone(),
                at: crate::time::format_rfc3339_ms(ballot.at),
            };
            let due = approval.due_after(ballot.at, |a| a.votes.push(vote.clone()));
            match self
                .pending
                .record_vote(request_id, &vote, approval.version, due)
                .await
                .map_err(ApprovalError::PendingStore)?
            {
                Conditional::Done(item) => {
                    self.metrics
                        .record(Measurement::vote_counted(ballot.platform));
                    return self.complete(ballot, &vote, *item).await;
                }
                // Another vote, a close or this voter's double click came first: check again.
                Conditional::Lost(Some(item)) => approval = *item,
                Conditional::Lost(None) => return Ok(VoteResult::Unknown),
            }
        }
        Err(ApprovalError::Contended(request_id.to_string()))
    }

    /// Logs a recorded vote (once) and closes the request if the vote decides it.
    async fn complete(
        &self,
        ballot: &Ballot,
        vote: &Vote,
        current: PendingApproval,
    ) -> Result<VoteResult, ApprovalError> {
        let draft = vote_event(vote).platform(ballot.platform.as_str());
        self.append(&current.request_id, draft).await?;
        if current.state != ApprovalState::Pending {
            let (approval, closed) = self.finish(current, None).await?;
            let evaluation = approval.evaluation.clone();
            // It closed earlier; it is this voter's close only if their vote decided it.
            let closed = closed.filter(|_| approval.decided_by.as_deref() == Some(&vote.voter));
            return Ok(VoteResult::Counted {
                approval,
                evaluation: Box::new(evaluation),
                closed,
            });
        }
        let prepared = PreparedRequest::new(current.request.clone())?;
        let attempt = format!(
            "vote:{}:{}:{}",
            vote.voter,
            crate::time::format_rfc3339_ms(ballot.at),
            attempt_tag()
        );
        let closer = Closer {
            decided_by: Some(&vote.voter),
            attempt,
            reevaluation: None,
        };
        self.close_if_decided(&prepared, current, closer, ballot.at)
            .await
    }
}

/// Why a ballot cast somewhere this request's messages are not does not count: a click must
/// come from a message regate posted for the request (a card copied or forwarded elsewhere does
/// not vote), in its place and, when the platform names the message clicked, that message. A
/// Teams click needs a Teams card of the request; a ballot of unknown place, and a Slack one on
/// a request with no Slack message, are not checked.
fn elsewhere(ballot: &Ballot, approval: &PendingApproval) -> Option<String> {
    let place = ballot.place.as_deref()?;
    let mut ours = approval
        .messages
        .iter()
        .filter(|m| m.platform() == ballot.platform)
        .peekable();
    if ours.peek().is_none() && ballot.platform != Platform::Teams {
        return None;
    }
    let clicked = |m: &MessageRef| {
        m.place() == place && ballot.message.as_deref().is_none_or(|id| m.id() == id)
    };
    if ours.any(clicked) {
        return None;
    }
    Some("this request was not posted where you clicked".into())
}

/// The `vote` event of a counted vote (once per voter).
pub(super) fn vote_event(vote: &Vote) -> EventDraft {
    let mut draft = EventDraft::new(EventKind::Vote)
        .actor(&vote.voter)
        .data("vote", vote.vote.as_str())
        .once(format!("vote#{}", vote.voter));
    if let Some(reason) = &vote.reason {
        draft = draft.data("reason", reason.as_str());
    }
    draft
}
