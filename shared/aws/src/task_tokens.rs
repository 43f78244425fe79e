//! Step Functions task tokens: resume a paused workflow with success or failure.

use aws_sdk_sfn::types::ExecutionStatus as SfnStatus;
use aws_sdk_sfn::Client;
use regate_core::ports::{ExecutionStatus, TaskTokenError, TaskTokens};
use regate_core::TaskToken;

use crate::error::{classify, Failure};

/// Step Functions' limit on a task's output.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// Error codes that mean the execution no longer waits on this token.
const CLOSED_CODES: [&str; 3] = ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"];

pub struct SfnTaskTokens {
    client: Client,
}

impl SfnTaskTokens {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// The error name a failed execution ended with, from its history's `ExecutionFailed` event
/// (newest first): for readers that need it when `DescribeExecution` leaves it out, as moto
/// does. Not used by the functions (AWS describes a failure's error, and their roles may not
/// read histories).
pub async fn failure_error(client: &Client, execution: &str) -> Result<Option<String>, String> {
    let history = client
        .get_execution_history()
        .execution_arn(execution)
        .reverse_order(true)
        .send()
        .await
        .map_err(|e| crate::describe_sdk(&e))?;
    Ok(history
        .events()
        .iter()
        .find_map(|e| e.execution_failed_event_details())
        .and_then(|f| f.error())
        .map(str::to_string))
}

fn token_error(failure: Failure) -> TaskTokenError {
    match failure {
        Failure::Throttled(m) => TaskTokenError::Throttled(m),
        Failure::Service { code, .. } if CLOSED_CODES.contains(&code.as_str()) => {
            TaskTokenError::AlreadyClosed(code)
        }
        Failure::Unavailable(m) => TaskTokenError::Unavailable(m),
        Failure::Service { code, message } => {
            TaskTokenError::Unavailable(format!("{code}: {message}"))
        }
    }
}

impl TaskTokens for SfnTaskTokens {
    async fn execution_status(
        &self,
        execution_id: &str,
    ) -> Result<ExecutionStatus, TaskTokenError> {
        let described = self
            .client
            .describe_execution()
            .execution_arn(execution_id)
            .send()
            .await;
        let output = match described {
            Ok(output) => output,
            Err(error) => {
                return match classify(&error) {
                    Failure::Service { code, .. }
                        if code == "ExecutionDoesNotExist" || code == "InvalidArn" =>
                    {
                        Ok(ExecutionStatus::Gone)
                    }
                    failure => Err(token_error(failure)),
                }
            }
        };
        Ok(match output.status() {
            SfnStatus::Running | SfnStatus::PendingRedrive => ExecutionStatus::Running,
            SfnStatus::Succeeded => ExecutionStatus::Succeeded,
            _ => ExecutionStatus::Failed(output.error().map(str::to_string)),
        })
    }

    async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), TaskTokenError> {
        let output = output.to_string();
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(TaskTokenError::Unavailable(format!(
                "task output is {} bytes; Step Functions accepts at most {MAX_OUTPUT_BYTES}",
                output.len()
            )));
        }
        self.client
            .send_task_success()
            .task_token(token.expose())
            .output(output)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| token_error(classify(&e)))
    }

    async fn fail(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), TaskTokenError> {
        self.client
            .send_task_failure()
            .task_token(token.expose())
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| token_error(classify(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
    use aws_sdk_sfn::types::error::{TaskDoesNotExist, TaskTimedOut};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn meta(code: &str) -> aws_sdk_sfn::error::ErrorMetadata {
        aws_sdk_sfn::error::ErrorMetadata::builder()
            .code(code)
            .build()
    }

    #[tokio::test]
    async fn a_timed_out_or_unknown_task_is_already_closed() {
        let timed_out = mock!(Client::send_task_success)
            .sequence()
            .error(|| {
                SendTaskSuccessError::TaskTimedOut(
                    TaskTimedOut::builder().meta(meta("TaskTimedOut")).build(),
                )
            })
            .error(|| {
                SendTaskSuccessError::TaskDoesNotExist(
                    TaskDoesNotExist::builder()
                        .meta(meta("TaskDoesNotExist"))
                        .build(),
                )
            })
            .build();
        let tokens = SfnTaskTokens::new(mock_client!(
            aws_sdk_sfn,
            RuleMode::Sequential,
            [&timed_out]
        ));
        let token = TaskToken::new("t");
        let value = serde_json::json!({});
        assert_eq!(
            tokens.succeed(&token, &value).await,
            Err(TaskTokenError::AlreadyClosed("TaskTimedOut".into()))
        );
        assert_eq!(
            tokens.succeed(&token, &value).await,
            Err(TaskTokenError::AlreadyClosed("TaskDoesNotExist".into()))
        );
    }

    #[tokio::test]
    async fn an_oversized_output_is_refused_before_sending() {
        let rule = mock!(Client::send_task_success).then_output(|| {
            aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput::builder().build()
        });
        let tokens = SfnTaskTokens::new(mock_client!(aws_sdk_sfn, [&rule]));
        let big = serde_json::json!({"x": "y".repeat(MAX_OUTPUT_BYTES)});
        assert!(matches!(
            tokens.succeed(&TaskToken::new("t"), &big).await,
            Err(TaskTokenError::Unavailable(_))
        ));
        assert_eq!(rule.num_calls(), 0);
    }
}
