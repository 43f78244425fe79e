//! Task tokens against moto's real Step Functions: a state machine waits on a token (through
//! SQS, which moto runs), regate resumes it, and a closed or unknown token reads as
//! "already closed".

use std::time::Duration;

use regate_aws::SfnTaskTokens;
use regate_core::ports::{TaskTokenError, TaskTokens};
use regate_core::TaskToken;
use regate_tests::{local_config, unique};
use serde_json::{json, Value};

/// A state machine that sends its task token to a new queue and waits; returns both.
async fn token_machine(config: &aws_config::SdkConfig) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let sfn = aws_sdk_sfn::Client::new(config);
    let queue = sqs
        .create_queue()
        .queue_name(unique("tokens"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let definition = json!({"StartAt": "Wait", "States": {"Wait": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 300, "End": true}}});
    let machine = sfn
        .create_state_machine()
        .name(unique("tokens"))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/regate-local")
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    (machine, queue)
}

/// Starts an execution of `machine` and returns its ARN and the token it waits on.
async fn start_waiting(
    config: &aws_config::SdkConfig,
    (machine, queue): &(String, String),
) -> (String, TaskToken) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let sfn = aws_sdk_sfn::Client::new(config);
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(unique("run"))
        .input("{}")
        .send()
        .await
        .unwrap()
        .execution_arn;
    for _ in 0..50 {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(message) = received.messages().first() {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            return (execution, TaskToken::new(body["token"].as_str().unwrap()));
        }
    }
    panic!("the state machine never sent its task token");
}

async fn final_status(config: &aws_config::SdkConfig, execution: &str) -> (String, Option<String>) {
    let sfn = aws_sdk_sfn::Client::new(config);
    // Up to a minute: the machine may be busy with the rest of the suite.
    for _ in 0..600 {
        let described = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        if described.status().as_str() != "RUNNING" {
            return (
                described.status().as_str().to_string(),
                described.output().map(String::from),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the execution is still running");
}

#[tokio::test]
async fn success_resumes_the_execution_once_and_a_second_call_is_already_closed() {
    let config = local_config().await;
    let tokens = SfnTaskTokens::new(aws_sdk_sfn::Client::new(&config));
    let (execution, token) = start_waiting(&config, &token_machine(&config).await).await;
    tokens
        .succeed(&token, &json!({"request_id": "chg-1", "outcome": "allow"}))
        .await
        .unwrap();
    let (status, output) = final_status(&config, &execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert_eq!(
        serde_json::from_str::<Value>(&output.unwrap()).unwrap()["outcome"],
        "allow"
    );
    assert!(matches!(
        tokens.succeed(&token, &json!({})).await,
        Err(TaskTokenError::AlreadyClosed(_))
    ));
}

#[tokio::test]
async fn failure_fails_the_execution_with_the_error_name() {
    let config = local_config().await;
    let tokens = SfnTaskTokens::new(aws_sdk_sfn::Client::new(&config));
    let (execution, token) = start_waiting(&config, &token_machine(&config).await).await;
    tokens
        .fail(&token, "ApprovalRejected", "rejected by alice@example.com")
        .await
        .unwrap();
    assert_eq!(final_status(&config, &execution).await.0, "FAILED");
    let history = aws_sdk_sfn::Client::new(&config)
        .get_execution_history()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    let failed = history
        .events()
        .iter()
        .find_map(|e| e.execution_failed_event_details())
        .unwrap();
    assert_eq!(failed.error(), Some("ApprovalRejected"));
}

#[tokio::test]
async fn two_executions_of_one_state_machine_wait_and_resume_independently() {
    let config = local_config().await;
    let tokens = SfnTaskTokens::new(aws_sdk_sfn::Client::new(&config));
    let machine = token_machine(&config).await;
    let (first, first_token) = start_waiting(&config, &machine).await;
    let (second, second_token) = start_waiting(&config, &machine).await;
    tokens
        .fail(&second_token, "ApprovalRejected", "no")
        .await
        .unwrap();
    tokens
        .succeed(&first_token, &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(final_status(&config, &first).await.0, "SUCCEEDED");
    assert_eq!(final_status(&config, &second).await.0, "FAILED");
}

#[tokio::test]
async fn an_unknown_token_is_already_closed_for_every_call() {
    let config = local_config().await;
    let tokens = SfnTaskTokens::new(aws_sdk_sfn::Client::new(&config));
    let bogus = TaskToken::new(unique("not-a-token"));
    assert!(matches!(
        tokens.succeed(&bogus, &json!({})).await,
        Err(TaskTokenError::AlreadyClosed(_))
    ));
    assert!(matches!(
        tokens.fail(&bogus, "X", "y").await,
        Err(TaskTokenError::AlreadyClosed(_))
    ));
}
