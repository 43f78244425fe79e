//! Cold start of each function binary: from spawning the process to its first
//! `GET /2018-06-01/runtime/invocation/next`, which a Lambda runtime sends once its init is
//! done. The harness is that Runtime API endpoint, and the AWS endpoint too, on 127.0.0.1: the
//! calls a function makes at init are Secrets Manager's `GetSecretValue`, the policy bucket's
//! `current.json` and bundle (S3 `GetObject`, a signed bundle of `policies/`) and the policy
//! key's `GetPublicKey` (KMS). Each start begins with an empty bundle cache, as a new Lambda
//! sandbox's `/tmp` is. Settings come from `infra/local/local.env`, pointed at the harness.
//!
//! Each binary is started `--runs` times (20) in turn with the baseline, a hello-world
//! `lambda_runtime` binary, so that both see the same machine; the medians and their ratio are
//! printed. With `--callgrind`, each is also run once under `valgrind --tool=callgrind` and
//! stopped at its first `/next`, and the instructions its init executed are printed; the run
//! fails when a function's init passes 15 M instructions.
//!
//! Run: `bash bench/run.sh coldstart`, or
//! `coldstart --hello target/release/hello evaluator=target/release/evaluator ...`

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use base64::Engine;
use regate_bench::stats::{human, publish, table_path, Samples};
use regate_core::canonical::sha256_hex;
use regate_core::policy::OpaBundle;
use serde_json::{json, Value};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
/// A function's init that has not reached `/next` by then has failed.
const INIT_DEADLINE: Duration = Duration::from_secs(20);
const CALLGRIND_DEADLINE: Duration = Duration::from_secs(300);
const TARGET_RATIO: f64 = 2.0;
const TARGET_INSTRUCTIONS: u64 = 15_000_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("coldstart: {problem}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    runs: usize,
    callgrind: bool,
    hello: PathBuf,
    functions: Vec<(String, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 20,
        callgrind: false,
        hello: PathBuf::new(),
        functions: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--runs takes a number")?
            }
            "--callgrind" => args.callgrind = true,
            "--hello" => args.hello = it.next().ok_or("--hello takes a path")?.into(),
            other => {
                let (name, path) = other
                    .split_once('=')
                    .ok_or_else(|| format!("expected NAME=PATH, not {other}"))?;
                args.functions.push((name.to_string(), path.into()));
            }
        }
    }
    if args.hello.as_os_str().is_empty() || args.functions.is_empty() {
        return Err("usage: coldstart [--runs N] [--callgrind] --hello PATH NAME=PATH...".into());
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let local = local_env()?;
    let (port, arrivals) = serve(Served::new(&local)?)?;
    let env = settings(&local, port);
    let cache = PathBuf::from(env_value(&env, "REGATE_POLICY_CACHE_DIR"));
    let mut samples: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let all: Vec<(String, PathBuf)> = std::iter::once(("hello".to_string(), args.hello.clone()))
        .chain(args.functions.iter().cloned())
        .collect();
    // One warm-up start each (page cache), then the measured rounds, interleaved.
    for round in 0..=args.runs {
        for (name, path) in &all {
            let _ = std::fs::remove_dir_all(&cache);
            let took = start_once(name, path, &env, &arrivals)?;
            if round > 0 {
                samples.entry(name.clone()).or_default().push(took);
            }
        }
    }
    let medians: BTreeMap<String, Duration> = samples
        .into_iter()
        .map(|(name, s)| (name, Samples::new(s).median()))
        .collect();
    let hello = medians["hello"];
    let mut instructions = BTreeMap::new();
    if args.callgrind {
        for (name, path) in &all {
            let _ = std::fs::remove_dir_all(&cache);
            instructions.insert(name.clone(), callgrind_init(name, path, &env, &arrivals)?);
        }
    }
    let mut table = format!(
        "| binary | spawn → first `/next`, median of {} | vs hello | init instructions (callgrind) | target |\n|---|---:|---:|---:|---|\n",
        args.runs
    );
    for (name, _) in &all {
        let median = medians[name];
        let count = instructions
            .get(name)
            .map(|n: &u64| format!("{:.1} M", *n as f64 / 1e6))
            .unwrap_or_else(|| "not measured".into());
        let target = if name == "hello" {
            "baseline".to_string()
        } else {
            format!(
                "≤ {TARGET_RATIO}× hello, ≤ {} M instructions",
                TARGET_INSTRUCTIONS / 1_000_000
            )
        };
        table.push_str(&format!(
            "| {name} | {} | {:.2}× | {count} | {target} |\n",
            human(median),
            median.as_secs_f64() / hello.as_secs_f64()
        ));
    }
    publish("coldstart", &table).map_err(|e| e.to_string())?;
    let over: Vec<String> = instructions
        .iter()
        .filter(|(name, n)| name.as_str() != "hello" && **n > TARGET_INSTRUCTIONS)
        .map(|(name, n)| format!("{name} ({:.1} M)", *n as f64 / 1e6))
        .collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "init passes {} M instructions: {}",
            TARGET_INSTRUCTIONS / 1_000_000,
            over.join(", ")
        ))
    }
}

fn env_value(env: &[(String, String)], name: &str) -> String {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Starts `path`, waits for its first `/next`, stops it; returns the time in between.
fn start_once(
    name: &str,
    path: &Path,
    env: &[(String, String)],
    arrivals: &Receiver<Instant>,
) -> Result<Duration, String> {
    drain(arrivals);
    let started = Instant::now();
    let child = Command::new(path)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let arrived = wait_for_next(name, child, arrivals, INIT_DEADLINE, false)?;
    Ok(arrived.duration_since(started))
}

/// Instructions executed from the process's start to its first `/next`, under callgrind.
fn callgrind_init(
    name: &str,
    path: &Path,
    env: &[(String, String)],
    arrivals: &Receiver<Instant>,
) -> Result<u64, String> {
    drain(arrivals);
    // Kept for `callgrind_annotate`, which shows where init's instructions go.
    let out = table_path(&format!("callgrind.{name}")).with_extension("out");
    let child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(path)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start valgrind (is it installed?): {e}"))?;
    wait_for_next(name, child, arrivals, CALLGRIND_DEADLINE, true)?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{name}: no instruction total in callgrind's output"))
}

/// Waits for the child's first `/next`, then stops it: SIGTERM when `graceful` (so that
/// callgrind writes its counts), else SIGKILL. An exit before `/next` is the child's init
/// failing, reported with what it printed.
fn wait_for_next(
    name: &str,
    mut child: Child,
    arrivals: &Receiver<Instant>,
    deadline: Duration,
    graceful: bool,
) -> Result<Instant, String> {
    let give_up = Instant::now() + deadline;
    let arrived = loop {
        if let Ok(at) = arrivals.recv_timeout(Duration::from_millis(1)) {
            break Some(at);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break None;
        }
        if Instant::now() > give_up {
            break None;
        }
    };
    if graceful {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    } else {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    arrived.ok_or_else(|| {
        format!(
            "{name} did not reach {NEXT} within {deadline:?}; it printed:\n{}",
            stderr
                .lines()
                .rev()
                .filter(|line| !line.contains("   by 0x"))
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn drain(arrivals: &Receiver<Instant>) {
    while arrivals.try_recv().is_ok() {}
}

/// The local stack's settings and fake secrets.
fn local_env() -> Result<BTreeMap<String, String>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/local.env");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The secrets Secrets Manager holds on the local stack, by id (see `infra/local/stack.py`).
fn secrets(local: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let var = |name: &str| local.get(name).cloned().unwrap_or_default();
    BTreeMap::from([
        (
            var("SLACK_SECRET_ID"),
            json!({"signing_secret": var("SLACK_SIGNING_SECRET"), "bot_token": var("SLACK_BOT_TOKEN")})
                .to_string(),
        ),
        (
            var("TEAMS_SECRET_ID"),
            json!({"app_id": var("TEAMS_APP_ID"), "tenant_id": var("TEAMS_TENANT_ID"),
                   "client_secret": var("TEAMS_CLIENT_SECRET")})
            .to_string(),
        ),
    ])
}

/// The local settings with every endpoint pointed at the harness.
fn settings(local: &BTreeMap<String, String>, port: u16) -> Vec<(String, String)> {
    let here = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(String, String)> = local
        .iter()
        .map(|(k, v)| {
            let v = if v.starts_with("http://127.0.0.1:") {
                let rest = v.trim_start_matches("http://127.0.0.1:");
                let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
                format!("{here}{path}")
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    env.push(("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")));
    env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), "coldstart".into()));
    env.push(("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "256".into()));
    env.push(("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let cache = std::env::temp_dir().join(format!("regate-coldstart-{}", std::process::id()));
    env.push((
        "REGATE_POLICY_CACHE_DIR".into(),
        cache.display().to_string(),
    ));
    env
}

/// What the harness answers besides the Runtime API: the secrets, the policy bucket's pointer
/// and bundle (`policies/`, signed), and the policy key's public key.
struct Served {
    secrets: BTreeMap<String, String>,
    /// S3 paths (`/bucket/key`) and their bodies.
    objects: BTreeMap<String, Vec<u8>>,
    public_key_der: Vec<u8>,
}

impl Served {
    fn new(local: &BTreeMap<String, String>) -> Result<Self, String> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| e.to_string())?;
        let private = pair.to_pkcs8v1().map_err(|e| e.to_string())?;
        let public_key_der = pair
            .public_key()
            .as_der()
            .map_err(|e| e.to_string())?
            .as_ref()
            .to_vec();
        let bundle = regate_policies::bundle().map_err(|e| e.to_string())?;
        let file = OpaBundle::build(&bundle)
            .and_then(|built| built.sign_with_private_key(private.as_ref(), None))
            .and_then(|signed| signed.to_bytes())
            .map_err(|e| e.to_string())?;
        let bucket = local
            .get("REGATE_POLICY_BUCKET")
            .ok_or("local.env names no REGATE_POLICY_BUCKET")?;
        let key = regate_aws::policy_bucket::bundle_key(&bundle.revision);
        let pointer = json!({"revision": bundle.revision, "sha256": sha256_hex(&file),
            "key": key, "pushed_at": "2026-06-01T12:00:00.000Z", "pushed_by": "coldstart"});
        let objects = BTreeMap::from([
            (
                format!("/{bucket}/current.json"),
                pointer.to_string().into_bytes(),
            ),
            (format!("/{bucket}/{key}"), file),
        ]);
        Ok(Self {
            secrets: secrets(local),
            objects,
            public_key_der,
        })
    }
}

/// The harness's endpoint: `/next` (its arrival time is sent on the channel and the request is
/// left unanswered), `init/error` (answered), Secrets Manager's GetSecretValue.
fn serve(served: Served) -> Result<(u16, Receiver<Instant>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (sender, receiver) = channel();
    let served = std::sync::Arc::new(served);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (sender, served) = (sender.clone(), served.clone());
            std::thread::spawn(move || {
                let _ = answer(stream, &sender, &served);
            });
        }
    });
    Ok((port, receiver))
}

fn answer(stream: TcpStream, arrivals: &Sender<Instant>, served: &Served) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let at = Instant::now();
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let path = line.split_whitespace().nth(1).unwrap_or("");
        if path == NEXT {
            let _ = arrivals.send(at);
            // Never answered: the process is stopped now.
            std::thread::sleep(Duration::from_secs(3600));
            return Ok(());
        }
        if let Some(object) = served.objects.get(path) {
            let head = format!(
                "HTTP/1.1 200 X\r\ncontent-type: application/octet-stream\r\netag: \"{}\"\r\ncontent-length: {}\r\n\r\n",
                &sha256_hex(object)[..32],
                object.len()
            );
            // One write (see below).
            stream.write_all(&[head.as_bytes(), object].concat())?;
            continue;
        }
        let (status, reply) = match headers.get("x-amz-target").map(String::as_str) {
            Some("secretsmanager.GetSecretValue") => secret_value(&body, &served.secrets),
            Some("TrentService.GetPublicKey") => (
                200,
                json!({"KeyId": "coldstart", "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
                       "PublicKey": base64::engine::general_purpose::STANDARD.encode(&served.public_key_der)}),
            ),
            _ if path.ends_with("/init/error") => (202, json!({"status": "OK"})),
            _ => (
                404,
                json!({"message": format!("the harness does not serve {path}")}),
            ),
        };
        let reply = reply.to_string();
        // One write: `write!` on the socket would send the answer in pieces, and Nagle's
        // algorithm would hold the last piece until the client's delayed ACK (about 40 ms).
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        stream.write_all(answer.as_bytes())?;
    }
}

/// GetSecretValue's answer, or its ResourceNotFoundException.
fn secret_value(body: &[u8], secrets: &BTreeMap<String, String>) -> (u16, Value) {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let id = request["SecretId"].as_str().unwrap_or_default();
    match secrets.get(id) {
        Some(secret) => (
            200,
            json!({
                "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}"),
                "Name": id,
                "SecretString": secret,
                "VersionId": "00000000-0000-0000-0000-000000000001",
            }),
        ),
        None => (
            400,
            json!({"__type": "ResourceNotFoundException", "message": format!("no secret {id}")}),
        ),
    }
}
