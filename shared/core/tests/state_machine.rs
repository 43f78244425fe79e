//! The state machine's `Retry` lists against the one place that names errors
//! (`regate_core::error`): every retryable error a step's code raises is retried there, and
//! every name a `Retry` list gives is one some code raises (ours, or the Lambda service's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use regate_core::error::{ErrorName, Step};
use serde_json::Value;

/// Names the Lambda service and Step Functions raise themselves, which a `Retry` may list.
const PLATFORM_RETRYABLE: [&str; 5] = [
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Lambda.SdkClientException",
    "Sandbox.Timedout",
    "States.Timeout",
];

fn state_machine() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../infra/statemachine/approval.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Which of our steps a Task state runs, from the function it invokes and its mode.
fn step_of(state: &Value) -> Option<Step> {
    let function = state.pointer("/Parameters/FunctionName")?.as_str()?;
    let mode = state
        .pointer("/Parameters/Payload/mode")
        .and_then(Value::as_str);
    match (function, mode) {
        ("${EvaluatorFunctionArn}", _) => Some(Step::Evaluate),
        ("${NotifierFunctionArn}", Some("notify")) => Some(Step::Notify),
        ("${NotifierFunctionArn}", Some("expire")) => Some(Step::Expire),
        _ => None,
    }
}

/// Every problem with one state's `Retry` lists, given the step it runs.
fn problems(name: &str, state: &Value, step: Step) -> Vec<String> {
    let retried: BTreeSet<&str> = state["Retry"]
        .as_array()
        .map(|retries| {
            retries
                .iter()
                .flat_map(|r| r["ErrorEquals"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect()
        })
        .unwrap_or_default();
    let raised = step.raises();
    let mut found = Vec::new();
    for error in raised.iter().filter(|e| e.is_retryable()) {
        if !retried.contains(error.as_str()) {
            found.push(format!(
                "{name}: retryable {} is not retried",
                error.as_str()
            ));
        }
    }
    for listed in retried {
        let ours = raised.iter().find(|e| e.as_str() == listed);
        match ours {
            Some(error) if !error.is_retryable() => {
                found.push(format!("{name}: {listed} is retried but is not retryable"));
            }
            Some(_) => {}
            None if PLATFORM_RETRYABLE.contains(&listed) => {}
            None => found.push(format!(
                "{name}: {listed} is retried but nothing in this step raises it"
            )),
        }
    }
    found
}

/// The problems of every state that runs one of our steps, and which steps were found.
fn all_problems(machine: &Value) -> (Vec<String>, Vec<Step>) {
    let mut found = Vec::new();
    let mut steps = Vec::new();
    for (name, state) in machine["States"].as_object().unwrap() {
        if let Some(step) = step_of(state) {
            steps.push(step);
            found.extend(problems(name, state, step));
        }
    }
    (found, steps)
}

#[test]
fn every_retryable_error_is_retried_and_every_retried_error_is_raised() {
    let (found, steps) = all_problems(&state_machine());
    assert_eq!(found, Vec::<String>::new());
    assert!(
        Step::ALL.iter().all(|step| steps.contains(step)),
        "every step is in the state machine: {steps:?}"
    );
}

#[test]
fn removing_a_retryable_name_or_adding_an_unknown_one_is_caught() {
    let mut machine = state_machine();
    let retry = machine
        .pointer_mut("/States/WaitForApproval/Retry/0/ErrorEquals")
        .unwrap()
        .as_array_mut()
        .unwrap();
    retry.retain(|name| name != ErrorName::ChatRateLimited.as_str());
    retry.push(Value::from("Chat.Nonsense"));
    let (found, _) = all_problems(&machine);
    assert_eq!(
        found,
        [
            "WaitForApproval: retryable Chat.RateLimited is not retried",
            "WaitForApproval: Chat.Nonsense is retried but nothing in this step raises it",
        ]
    );
}
