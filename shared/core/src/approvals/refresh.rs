//! Every message shows the approval as it is now: update each, then read the approval back and
//! show a state another path stored meanwhile (chat platforms have no conditional update).

use super::Approvals;
use crate::decision::Evaluation;
use crate::pending::{ApprovalState, ApprovalView, PendingApproval};
use crate::ports::{ChatPlatform, Ports};

/// How many times [`Approvals::refresh`] reads an approval back and shows a newer state: a
/// state changes at most three times after it is first shown (closed, resumed, expired).
const REFRESH_READBACKS: usize = 3;

impl<P: Ports> Approvals<P> {
    /// Shows the approval on every message, then reads it back: if another path closed,
    /// resumed or expired it meanwhile, shows that instead. Slack and Teams have no conditional
    /// update, so a path that rendered an older state (a click slowed by retries, say) could
    /// otherwise write last; the path that stores the last state refreshes after storing it,
    /// and whoever wrote before that reads it back. The state is already stored, so a failure
    /// is logged and never loses anything.
    pub async fn refresh(&self, approval: &PendingApproval, evaluation: &Evaluation) {
        self.show(approval, evaluation).await;
        let mut shown = (approval.state, approval.resumed);
        for _ in 0..REFRESH_READBACKS {
            let stored = match self.load(&approval.request_id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(request_id = %approval.request_id, error = %error, "could not read the approval back after updating its messages");
                    return;
                }
            };
            // A pending approval shown with other votes is brought up to date by the next
            // vote or by its close; only a state the messages do not show yet is shown here.
            if stored.state == ApprovalState::Pending || (stored.state, stored.resumed) == shown {
                return;
            }
            tracing::info!(request_id = %approval.request_id, state = stored.state.as_str(), "the approval moved on while its messages were updated; showing it as it is now");
            self.show(&stored, &stored.evaluation).await;
            shown = (stored.state, stored.resumed);
        }
    }

    async fn show(&self, approval: &PendingApproval, evaluation: &Evaluation) {
        let view = ApprovalView {
            approval,
            evaluation,
        };
        for message in &approval.messages {
            if let Err(error) = self.chat.update(message, view).await {
                let error = self.chat_failed(message.platform(), error);
                tracing::warn!(request_id = %approval.request_id, error = %error, "could not update an approval message");
            }
        }
    }
}
