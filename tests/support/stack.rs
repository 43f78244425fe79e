//! A driver for the whole local stack: start executions of the real state machine, find the
//! messages the notifier posted to the Slack stand-in, click their buttons with properly signed
//! requests to the real callback, and wait for executions to finish. Used by the end-to-end
//! tests and the demo.

use std::time::{Duration, Instant};

use regate_aws::DynamoDecisionLog;
use regate_chat::slack::interaction::{click_payload, form_body, reason_payload};
use regate_chat::slack::signature::sign;
use regate_testkit::RequestBuilder;
use secrecy::SecretString;
use serde_json::Value;

use crate::{decision_log_table, local_config, local_env, repo_root};

/// The fault-injecting proxy between the functions and moto (infra/local/stack).
const FAULT_PROXY: &str = "http://127.0.0.1:5006";

/// How long a "slow" fault holds a call: long enough for a test to act in between, even while
/// the other tests keep the one-at-a-time functions busy.
const SLOW_MS: u64 = 8000;

/// Upper bound on any wait for the stack.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct LocalStack {
    pub sfn: aws_sdk_sfn::Client,
    pub log: DynamoDecisionLog,
    pub http: reqwest::Client,
    pub state_machine_arn: String,
    pub interactivity_url: String,
    pub teams_endpoint: String,
    pub chat_url: String,
    signing_secret: SecretString,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
}

impl Finished {
    /// The approvers its output names (null when it has no output).
    pub fn approvers(&self) -> Value {
        self.output
            .as_ref()
            .map(|o| o["approvers"].clone())
            .unwrap_or_default()
    }

    /// Asserts the execution succeeded, approved by exactly `approvers`.
    pub fn assert_approved_by(&self, approvers: &[&str]) {
        assert_eq!(self.status, "SUCCEEDED", "{self:?}");
        assert_eq!(self.approvers(), serde_json::json!(approvers), "{self:?}");
    }

    /// Asserts the execution failed with `error`.
    pub fn assert_failed(&self, error: &str) {
        assert_eq!(
            (self.status.as_str(), self.error.as_deref()),
            ("FAILED", Some(error)),
            "{self:?}"
        );
    }
}

/// The answer of the callback to one HTTP request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// The identity token the issuer stand-in gives a GitHub Actions job that `actor` ran from
/// acme/payments on main, for the stack's audience.
pub async fn pipeline_token(actor: &str) -> String {
    let env = local_env();
    let mut url = reqwest::Url::parse(&format!("{}/token", env["REGATE_TRUSTED_ISSUERS"])).unwrap();
    url.query_pairs_mut()
        .append_pair("audience", &env["REGATE_IDENTITY_AUDIENCE"])
        .append_pair("actor", actor)
        .append_pair("repository", "acme/payments")
        .append_pair("ref", "refs/heads/main");
    // tests/identity.rs takes the issuer out for a moment: a job asks again, as a CI runner does.
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let answer = client
            .get(url.clone())
            .bearer_auth(&env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
            .send()
            .await
            .unwrap();
        if answer.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE && started.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let answer: Value = answer.json().await.unwrap();
        return answer["value"].as_str().unwrap().to_string();
    }
}

impl LocalStack {
    /// Connects to the running stack (`infra/local/stack up`); fails loudly when it is not up.
    pub async fn connect() -> Self {
        let config = local_config().await;
        let resources_path = repo_root().join(".local/run/resources.json");
        let resources: Value = serde_json::from_str(
            &std::fs::read_to_string(&resources_path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing: start the stack with `infra/local/stack up`",
                    resources_path.display()
                )
            }),
        )
        .unwrap();
        let env = local_env();
        Self {
            sfn: aws_sdk_sfn::Client::new(&config),
            log: DynamoDecisionLog::new(
                aws_sdk_dynamodb::Client::new(&config),
                decision_log_table(),
            ),
            http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
            state_machine_arn: resources["state_machine_arn"].as_str().unwrap().to_string(),
            interactivity_url: resources["slack_interactivity_url"]
                .as_str()
                .unwrap()
                .to_string(),
            teams_endpoint: resources["teams_messaging_endpoint"]
                .as_str()
                .unwrap()
                .to_string(),
            chat_url: env["SLACK_API_URL"].trim_end_matches("/api").to_string(),
            signing_secret: SecretString::from(env["SLACK_SIGNING_SECRET"].clone()),
        }
    }

    /// Starts a request under a fresh id made from `prefix`, shaped by `shape` from the
    /// testkit's default request; returns the id and the execution.
    pub async fn begin(
        &self,
        prefix: &str,
        shape: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> (String, String) {
        let id = crate::unique(prefix);
        let execution = self
            .start(&shape(regate_testkit::request(&id)).json())
            .await;
        (id, execution)
    }

    /// Starts an execution named after the request id.
    pub async fn start(&self, request: &Value) -> String {
        self.start_named(request, request["id"].as_str().unwrap())
            .await
    }

    /// Starts an execution named `name`. A request without `identity_token` is sent with one
    /// the issuer stand-in gives a pipeline its requester ran (acme/payments on main), as
    /// `regate request start` does in GitHub Actions; a test that wants none sets it to null.
    pub async fn start_named(&self, request: &Value, name: &str) -> String {
        let mut request = request.clone();
        if request.get("identity_token").is_none() {
            let actor = request["requester"]["id"].as_str().unwrap_or_default();
            request["identity_token"] = Value::from(pipeline_token(actor).await);
        }
        self.sfn
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(request.to_string())
            .send()
            .await
            .unwrap()
            .execution_arn
    }

    pub async fn status(&self, execution: &str) -> Finished {
        let d = self
            .sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        let mut error = d.error().map(str::to_string);
        if error.is_none() && d.status().as_str() == "FAILED" {
            error = regate_aws::task_tokens::failure_error(&self.sfn, execution)
                .await
                .unwrap();
        }
        Finished {
            status: d.status().as_str().to_string(),
            output: d.output().and_then(|o| serde_json::from_str(o).ok()),
            error,
        }
    }

    pub async fn wait_finished(&self, execution: &str) -> Finished {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let now = self.status(execution).await;
            if now.status != "RUNNING" {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("execution {execution} still running after {WAIT:?}");
    }

    /// Waits for `execution` to succeed (it fails the test otherwise) and returns who approved,
    /// from its output.
    pub async fn approvers_of(&self, execution: &str) -> Value {
        let done = self.wait_finished(execution).await;
        assert_eq!(done.status, "SUCCEEDED", "{done:?}");
        done.output.unwrap()["approvers"].clone()
    }

    /// A local service's JSON answer to GET `url`.
    pub(crate) async fn get_json(&self, url: &str) -> Value {
        let answer = self.http.get(url).send().await.unwrap();
        answer.error_for_status().unwrap().json().await.unwrap()
    }

    /// Every Slack Web API call the stand-in received.
    pub async fn calls(&self) -> Vec<Value> {
        let calls = self.get_json(&format!("{}/_calls", self.chat_url)).await;
        serde_json::from_value(calls).unwrap()
    }

    /// Calls of one method that mention `needle` anywhere in their body.
    pub async fn calls_about(&self, method: &str, needle: &str) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["method"] == method && c["body"].to_string().contains(needle))
            .collect()
    }

    /// The approval message posted for a request: `(channel, ts, body)`.
    pub async fn message_for(&self, request_id: &str) -> (String, String, Value) {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let posted = self
                .calls_about("chat.postMessage", &format!("\"value\":\"{request_id}\""))
                .await;
            if let Some(call) = posted.first() {
                let channel = call["body"]["channel"].as_str().unwrap().to_string();
                let ts = self.posted_ts(&channel, request_id).await;
                return (channel, ts, call["body"].clone());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no approval message for {request_id} within {WAIT:?}");
    }

    /// The `ts` Slack gave the message: the one chat.update calls for this request use, or the
    /// decision log's `notified` event.
    async fn posted_ts(&self, _channel: &str, request_id: &str) -> String {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let events = regate_core::ports::DecisionLog::events(&self.log, request_id)
                .await
                .unwrap();
            if let Some(notified) = events.iter().find(|e| {
                e.kind == regate_core::EventKind::Notified && e.platform.as_deref() == Some("slack")
            }) {
                return notified.data["ts"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no notified event for {request_id}");
    }

    /// The request's events once `ready` holds of them (polled for up to [`WAIT`]; `what` names
    /// what the test waits for when it never comes).
    pub async fn events_once(
        &self,
        request_id: &str,
        what: &str,
        ready: impl Fn(&[regate_core::Event]) -> bool,
    ) -> Vec<regate_core::Event> {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let events = self.events(request_id).await;
            if ready(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{request_id}: no {what} within {WAIT:?}");
    }

    /// The request's events once `messages` approval messages are logged as posted: a platform's
    /// `notified` may be logged after a click on another platform's message has decided.
    pub async fn once_posted(&self, request_id: &str, messages: usize) -> Vec<regate_core::Event> {
        let what = format!("{messages} posted messages");
        self.events_once(request_id, &what, |events| {
            crate::messages_posted(events) >= messages
        })
        .await
    }

    /// The request's events once its requester has been told the outcome: the sweeper tells
    /// them (every minute in AWS); here the test runs it on the request until it has.
    pub async fn once_requester_told(&self, request_id: &str) -> Vec<regate_core::Event> {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            let events = self.events(request_id).await;
            if crate::requester_told(&events).is_some() {
                return events;
            }
            self.sweep_request_now(request_id).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the requester of {request_id} was not told the outcome within {WAIT:?}");
    }

    /// The Slack user id the stand-in gives an e-mail address.
    pub async fn slack_user(&self, email: &str) -> String {
        let users = self.get_json(&format!("{}/_users", self.chat_url)).await;
        let users = users.as_array().unwrap();
        users
            .iter()
            .find(|u| u["email"] == email)
            .map(|u| u["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no Slack user {email}"))
    }

    /// POSTs a body to the callback as Slack would, signed at `timestamp` (or with `signature`).
    pub async fn post_signed(
        &self,
        body: &str,
        timestamp: i64,
        signature: Option<String>,
    ) -> Answer {
        let ts = timestamp.to_string();
        let signature =
            signature.unwrap_or_else(|| sign(&self.signing_secret, &ts, body.as_bytes()));
        let response = self
            .http
            .post(&self.interactivity_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        Answer {
            status: response.status().as_u16(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// Sends every click (`(email, action)`) on the request's message at the same moment, each
    /// from its own task: the answers and how long each took, timed from sending to the answer
    /// as Slack times it.
    pub async fn clicks_at_once(
        self: &std::sync::Arc<Self>,
        clicks: &[(String, &str)],
        request_id: &str,
    ) -> Vec<(Answer, Duration)> {
        let (channel, ts, _) = self.message_for(request_id).await;
        let mut bodies = Vec::new();
        for (email, action) in clicks {
            let user = self.slack_user(email).await;
            bodies.push(form_body(&click_payload(
                &user, action, request_id, &channel, &ts,
            )));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for body in bodies {
            let stack = self.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let answer = stack
                    .post_signed(&body, chrono::Utc::now().timestamp(), None)
                    .await;
                (answer, started.elapsed())
            });
        }
        tasks.join_all().await
    }

    /// A signed button click by `email` on the request's message.
    pub async fn click(&self, email: &str, action: &str, request_id: &str) -> Answer {
        self.click_as(&self.slack_user(email).await, action, request_id)
            .await
    }

    /// A signed button click by Slack user `user_id` on the request's message.
    pub async fn click_as(&self, user_id: &str, action: &str, request_id: &str) -> Answer {
        let (channel, ts, _) = self.message_for(request_id).await;
        let payload = click_payload(user_id, action, request_id, &channel, &ts);
        self.post_signed(&form_body(&payload), chrono::Utc::now().timestamp(), None)
            .await
    }

    /// A signed button click that the callback must answer with 200.
    pub async fn click_ok(&self, email: &str, action: &str, request_id: &str) {
        let answer = self.click(email, action, request_id).await;
        assert_eq!(
            answer.status, 200,
            "{email} {action} on {request_id}: {answer:?}"
        );
    }

    /// A signed submission of the rejection-reason modal.
    pub async fn submit_reason(&self, email: &str, request_id: &str, reason: &str) -> Answer {
        let payload = reason_payload(&self.slack_user(email).await, request_id, reason);
        self.post_signed(&form_body(&payload), chrono::Utc::now().timestamp(), None)
            .await
    }

    /// Tells the fault proxy between the functions and moto to fail `operation` (an
    /// X-Amz-Target such as "AWSStepFunctions.SendTaskSuccess") in `mode`, `times` times, for
    /// requests whose body holds every text in `matching` (see infra/local/fault_proxy.py).
    pub async fn inject(&self, operation: &str, mode: &str, times: u32, matching: &[&str]) {
        self.inject_fault(serde_json::json!({"operation": operation, "mode": mode,
            "times": times, "match": matching, "delay_ms": SLOW_MS}))
            .await;
    }

    /// Delays `operation` by `delay_ms`, `times` times, for requests holding every text in
    /// `matching`; the proxy counts how many such calls it held at once (`max_in_flight`).
    pub async fn delay(&self, operation: &str, delay_ms: u64, times: u32, matching: &[&str]) {
        self.inject_fault(serde_json::json!({"operation": operation, "mode": "slow",
            "times": times, "match": matching, "delay_ms": delay_ms}))
            .await;
    }

    /// Watches `operation` for requests holding every text in `matching`: the proxy forwards
    /// them unchanged and tallies moto's answers (see [`LocalStack::accepted`]).
    pub async fn watch(&self, operation: &str, matching: &[&str]) {
        self.inject_fault(serde_json::json!({"operation": operation, "mode": "watch",
            "times": 1_000_000, "match": matching}))
            .await;
    }

    /// How many `operation` calls, among the faults whose match includes `needle`, moto
    /// answered with 200.
    pub async fn accepted(&self, operation: &str, needle: &str) -> u64 {
        self.faults(needle)
            .await
            .iter()
            .filter(|f| f["operation"] == operation)
            .filter_map(|f| f["answers"]["200"].as_u64())
            .sum()
    }

    /// The most calls a delay whose match includes `needle` held at once.
    pub async fn max_in_flight(&self, needle: &str) -> u64 {
        self.faults(needle)
            .await
            .iter()
            .filter_map(|f| f["max_in_flight"].as_u64())
            .max()
            .unwrap_or(0)
    }

    pub async fn faults_of(&self, needle: &str) -> Vec<Value> {
        self.faults(needle).await
    }
    async fn faults(&self, needle: &str) -> Vec<Value> {
        let faults = self.get_json(&format!("{FAULT_PROXY}/_faults")).await;
        let faults: Vec<Value> = serde_json::from_value(faults).unwrap();
        faults
            .into_iter()
            .filter(|f| f["match"].to_string().contains(needle))
            .collect()
    }

    async fn inject_fault(&self, fault: Value) {
        self.http
            .post(format!("{FAULT_PROXY}/_faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// How often the faults whose match includes `needle` fired.
    pub async fn fired(&self, needle: &str) -> u64 {
        self.faults(needle)
            .await
            .iter()
            .filter_map(|f| f["fired"].as_u64())
            .sum()
    }

    /// Removes the faults whose match includes `needle` (a test's request id).
    pub async fn heal(&self, needle: &str) {
        // Request ids need no escaping in a query (letters, digits, '-', '_', '.', ':').
        self.http
            .delete(format!("{FAULT_PROXY}/_faults?match={needle}"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Runs the sweeper once, as its schedule would; returns its report.
    pub async fn sweep(&self) -> Value {
        self.invoke_sweeper(&serde_json::json!({})).await
    }

    /// Runs the sweeper on one request alone, as of `now` (the local sweeper takes the time from
    /// its input: `SWEEP_ACCEPTS_NOW` in local.env); returns its report.
    pub async fn sweep_request(
        &self,
        request_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Value {
        let input = serde_json::json!({"request_id": request_id,
            "now": regate_core::time::format_rfc3339_ms(now)});
        let report = self.invoke_sweeper(&input).await;
        assert!(report.get("errorType").is_none(), "{report}");
        report
    }

    /// Runs the sweeper on one request alone, now: as of a few seconds after the stack's time
    /// as the test reads it, since the sweeper refuses a time before its own clock's.
    pub async fn sweep_request_now(&self, request_id: &str) -> Value {
        let now = crate::stack_now() + chrono::Duration::seconds(5);
        self.sweep_request(request_id, now).await
    }

    /// A full sweep that looks at no approval (`limit` 0): a run's own metrics, and nothing
    /// that could race other tests' sweeps.
    pub async fn sweep_nothing(&self) -> Value {
        self.invoke_sweeper(&serde_json::json!({"limit": 0})).await
    }

    /// Runs the checkpointer once (the local one cuts a checkpoint at every run:
    /// `CHECKPOINT_MINUTES=0` in local.env); returns its result.
    pub async fn checkpoint(&self) -> Value {
        self.invoke("checkpointer", &serde_json::json!({})).await
    }

    async fn invoke_sweeper(&self, input: &Value) -> Value {
        self.invoke("sweeper", input).await
    }

    async fn invoke(&self, function: &str, input: &Value) -> Value {
        let base = self.interactivity_url.split("/lambda-url/").next().unwrap();
        self.http
            .post(format!(
                "{base}/2015-03-31/functions/{function}/invocations"
            ))
            .json(input)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A time no earlier than when the request's approval opened: its first message's
    /// `notified` event (waits for it). Sweeps "N minutes later" count from here.
    pub async fn opened_by(&self, request_id: &str) -> chrono::DateTime<chrono::Utc> {
        let notified = |events: &[regate_core::Event]| {
            events
                .iter()
                .find(|e| e.kind == regate_core::EventKind::Notified)
                .and_then(regate_core::Event::at_time)
        };
        let events = self
            .events_once(request_id, "notified event", |events| {
                notified(events).is_some()
            })
            .await;
        notified(&events).expect("events_once waited for it")
    }

    pub async fn events(&self, request_id: &str) -> Vec<regate_core::Event> {
        regate_core::ports::DecisionLog::events(&self.log, request_id)
            .await
            .unwrap()
    }
}
