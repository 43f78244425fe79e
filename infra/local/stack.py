"""The regate local AWS stack: `up`, `down`, `status` and `resources`.

`up` starts each service in the background (logs in .local/logs/, PIDs in .local/run/), waits
until it answers its health check, then creates the AWS resources described in
infra/template.yaml (the single source of truth). `down` stops exactly the processes `up`
started, by PID.
"""

import argparse
import datetime
import io
import json
import os
import zipfile
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
VENV_PYTHON = LOCAL / "venv" / "bin" / "python"
TEMPLATE = ROOT / "infra" / "template.yaml"
ENV_FILE = ROOT / "infra" / "local" / "local.env"
RESOURCES_FILE = RUN / "resources.json"
START_TIMEOUT_SECONDS = 90
STACK_NAME = "regate"
ACCOUNT = "123456789012"
FUNCTIONS_URL = "http://127.0.0.1:9000"
FUNCTION_BINARIES = ["evaluator", "notifier", "callback", "sweeper", "checkpointer"]
# REGATE_LOCAL_RELEASE=1 runs release builds of the functions (what the click-latency bench
# measures); by default they are debug builds, which build faster.
RELEASE = os.environ.get("REGATE_LOCAL_RELEASE") == "1"
PROFILE_DIR = "release" if RELEASE else "debug"


def read_env_file(path: Path = ENV_FILE) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


@dataclass
class Service:
    name: str
    port: int
    health_url: str
    command: list

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return LOGS / f"{self.name}.log"


def services() -> list:
    return [
        Service(
            name="moto",
            port=5005,
            # /moto-api/data.json fails (it asks Docker) once a function exists; the dashboard
            # does not.
            health_url="http://127.0.0.1:5005/moto-api/",
            command=[str(VENV_PYTHON), str(ROOT / "infra/local/moto_launcher.py"), "--port", "5005",
                     "--functions-url", FUNCTIONS_URL],
        ),
        # The functions reach moto through this proxy, which tests can tell to fail on purpose.
        Service(
            name="proxy",
            port=5006,
            health_url="http://127.0.0.1:5006/_faults",
            command=[str(VENV_PYTHON), str(ROOT / "infra/local/fault_proxy.py"), "--port", "5006",
                     "--upstream", "http://127.0.0.1:5005"],
        ),
        Service(
            name="chat",
            port=5010,
            health_url="http://127.0.0.1:5010/_health",
            command=[str(VENV_PYTHON), str(ROOT / "infra/local/chat_standin.py"), "--port", "5010"],
        ),
        # The real Lambda runtime API emulator running the real function binaries. It never
        # rebuilds by itself (--ignore-changes): `up` builds first.
        Service(
            name="functions",
            port=9000,
            health_url=f"{FUNCTIONS_URL}/",
            command=[str(LOCAL / "venv" / "bin" / "cargo-lambda"), "lambda", "watch", "-A", "127.0.0.1", "-P", "9000",
                     "--ignore-changes", "--concurrency", str(FUNCTION_CONCURRENCY)] + (["--release"] if RELEASE else []),
        ),
    ]


def build_functions() -> None:
    """Builds each function binary the way `cargo lambda watch` runs it (`cargo run --bin X`,
    so with the same features), before it serves them."""
    for binary in FUNCTION_BINARIES:
        command = ["cargo", "build", "--locked", "--bin", binary] + (["--release"] if RELEASE else [])
        print("up: building:", " ".join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            sys.exit(f"up: building the {binary} function failed (see the compiler output above)")


def functions_are_stale(service: Service) -> bool:
    """Whether a running `cargo lambda watch` serves binaries older than the ones just built."""
    if service.name != "functions" or not service.pid_file.exists():
        return False
    started = service.pid_file.stat().st_mtime
    return any((ROOT / "target" / PROFILE_DIR / binary).stat().st_mtime > started
               for binary in FUNCTION_BINARIES if (ROOT / "target" / PROFILE_DIR / binary).exists())


def warm_functions() -> None:
    """Starts each function's instances, so the first real invocations do not pay for their
    start: one of each, and for the callback as many as may run at once (clicks arrive
    together)."""
    def warm(binary: str) -> None:
        url = f"{FUNCTIONS_URL}/2015-03-31/functions/{binary}/invocations"
        request = urllib.request.Request(url, data=b'{"warm": true}', method="POST")
        try:
            urllib.request.urlopen(request, timeout=START_TIMEOUT_SECONDS).read()
        except urllib.error.HTTPError:
            pass  # the function answered (with an error for the empty event): it is running
        except (urllib.error.URLError, OSError) as error:
            sys.exit(f"up: the {binary} function did not start: {error}; see {LOGS / 'functions.log'}")

    for binary in FUNCTION_BINARIES:
        warm(binary)
    callbacks = [threading.Thread(target=warm, args=("callback",)) for _ in range(FUNCTION_CONCURRENCY)]
    for thread in callbacks:
        thread.start()
    for thread in callbacks:
        thread.join()
    print(f"functions: {', '.join(FUNCTION_BINARIES)} started ({FUNCTION_CONCURRENCY} callback instances)")


def port_is_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


def running_pid(service: Service):
    try:
        pid = int(service.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


CLOCK_OFFSET_FILE = RUN / "clock-offset"
FAULT_PROXY_URL = "http://127.0.0.1:5006"
# Instances of each function `cargo lambda watch` runs at once, as Lambda runs concurrent
# invocations in separate instances: concurrent clicks overlap as they do on AWS.
FUNCTION_CONCURRENCY = 16


def clock_offset() -> str:
    """Seconds from the real time to the stack's own calendar (REGATE_LOCAL_DATE in local.env),
    fixed once per stack so every function keeps the same clock across restarts. The functions
    then see the same dates on any day the demo and tests run: no freeze window or weekday in a
    policy's data can change their outcome."""
    if not CLOCK_OFFSET_FILE.exists():
        local_date = read_env_file().get("REGATE_LOCAL_DATE", "").strip()
        offset = 0
        if local_date:
            anchor = datetime.datetime.fromisoformat(local_date.replace("Z", "+00:00"))
            offset = int((anchor - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
        RUN.mkdir(parents=True, exist_ok=True)
        CLOCK_OFFSET_FILE.write_text(str(offset))
    return CLOCK_OFFSET_FILE.read_text().strip()


def start(service: Service) -> None:
    pid = running_pid(service)
    if pid and healthy(service.health_url):
        print(f"{service.name}: already running (pid {pid}) on 127.0.0.1:{service.port}")
        return
    if pid:
        stop(service)
    if port_is_taken(service.port):
        sys.exit(f"up: {service.name} cannot start: port {service.port} on 127.0.0.1 is taken by another process")
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **read_env_file()}
    if service.name == "functions":
        env["REGATE_CLOCK_OFFSET_SECONDS"] = clock_offset()
        env["AWS_ENDPOINT_URL"] = FAULT_PROXY_URL

    with open(service.log_file, "ab") as log:
        process = subprocess.Popen(
            service.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
    service.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            service.pid_file.unlink(missing_ok=True)
            sys.exit(f"up: {service.name} exited with code {process.returncode} before answering; "
                     f"last lines of {service.log_file}:\n{tail(service.log_file)}")
        if healthy(service.health_url):
            print(f"{service.name}: listening on http://127.0.0.1:{service.port} (pid {process.pid}, log {service.log_file})")
            return
        time.sleep(0.25)
    stop(service)
    sys.exit(f"up: {service.name} did not answer {service.health_url} within {START_TIMEOUT_SECONDS} s; "
             f"last lines of {service.log_file}:\n{tail(service.log_file)}")


def stop(service: Service) -> None:
    pid = running_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        print(f"{service.name}: not running")
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(40):
        if running_pid(service) is None:
            break
        time.sleep(0.25)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    service.pid_file.unlink(missing_ok=True)
    print(f"{service.name}: stopped (pid {pid})")


# ---------------------------------------------------------------- resources from the template

class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...) as plain mappings."""


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=TemplateLoader)


def client(service_name: str):
    env = read_env_file()
    return boto3.client(
        service_name, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def table_name(logical_id: str, properties: dict) -> str:
    name = properties.get("TableName")
    return name if isinstance(name, str) else logical_id


def create_table(dynamodb, logical_id: str, properties: dict) -> str:
    name = table_name(logical_id, properties)
    args = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if properties.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if properties.get("SSESpecification", {}).get("SSEEnabled"):
        args["SSESpecification"] = {"Enabled": True}
    if "DeletionProtectionEnabled" in properties:
        args["DeletionProtectionEnabled"] = bool(properties["DeletionProtectionEnabled"])
    try:
        dynamodb.create_table(**args)
        state = "created"
    except dynamodb.exceptions.ResourceInUseException:
        state = "exists"
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})
    pitr = properties.get("PointInTimeRecoverySpecification", {})
    if pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return f"table {name} ({state})"


# The template's keys and buckets, and the local.env setting that names each here.
KEY_ALIASES = {"CheckpointKey": "CHECKPOINT_KEY_ID", "PolicySigningKey": "REGATE_POLICY_KEY_ID"}
BUCKET_NAMES = {"CheckpointBucket": "CHECKPOINT_BUCKET", "PolicyBucket": "REGATE_POLICY_BUCKET"}


def create_key(logical_id: str, properties: dict) -> str:
    """A signing key of the template, under the alias local.env names for it."""
    kms = client("kms")
    key = kms.create_key(KeySpec=properties["KeySpec"], KeyUsage=properties["KeyUsage"],
                         Description=properties.get("Description", ""))
    alias = read_env_file()[KEY_ALIASES[logical_id]]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyMetadata"]["KeyId"])
    return f"KMS key {alias} ({properties['KeySpec']}, {properties['KeyUsage']}) (created)"


def create_bucket(logical_id: str, properties: dict) -> str:
    """A bucket of the template, named as local.env says, versioned as the template's are; the
    checkpoint bucket with its Object Lock (compliance mode, retention 1 day here)."""
    s3 = client("s3")
    name = read_env_file()[BUCKET_NAMES[logical_id]]
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(properties.get("ObjectLockEnabled")))
    if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if not properties.get("ObjectLockEnabled"):
        return f"bucket {name} (versioned) (created)"
    lock = properties.get("ObjectLockConfiguration", {})
    mode = lock.get("Rule", {}).get("DefaultRetention", {}).get("Mode", "COMPLIANCE")
    if isinstance(mode, dict):  # !Ref CheckpointRetentionMode: its default
        mode = load_template()["Parameters"][mode["Ref"]]["Default"]
    s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": 1}}})
    return f"bucket {name} (Object Lock, {mode}) (created)"


def publish_policy() -> None:
    """Builds the repository's policies/ into a bundle, signs it with the local policy key and
    pushes it to the policy bucket, with the regate CLI, as a policy repository's CI would. The
    functions load it at their cold start."""
    bundle = RUN / "policy-bundle.tar.gz"
    env = {**os.environ, **read_env_file()}
    settings = read_env_file()
    steps = [
        ["policy", "build", "policies", "--out", str(bundle)],
        ["policy", "sign", str(bundle), "--kms-key-id", settings["REGATE_POLICY_KEY_ID"]],
        ["policy", "push", str(bundle), "--bucket", settings["REGATE_POLICY_BUCKET"],
         "--public-key", settings["REGATE_POLICY_KEY_ID"]],
    ]
    subprocess.run(["cargo", "build", "--locked", "--quiet", "-p", "regate-cli", "--bin", "regate"],
                   cwd=ROOT, check=True)
    for step in steps:
        done = subprocess.run([str(ROOT / "target/debug/regate"), *step], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"up: regate {' '.join(step[:2])} failed: {done.stderr.strip()}")
        print("policy:", done.stdout.strip().splitlines()[-1])


def create_secret(name: str, fields: dict) -> str:
    secrets = client("secretsmanager")
    value = json.dumps(fields)
    try:
        secrets.create_secret(Name=name, SecretString=value)
        state = "created"
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=name, SecretString=value)
        state = "exists"
    return f"secret {name} ({state})"


def create_chat_secrets() -> str:
    """The Slack app's and the Teams bot's secrets, as the template's secrets hold them."""
    env = read_env_file()
    slack = create_secret(env["SLACK_SECRET_ID"], {"signing_secret": env["SLACK_SIGNING_SECRET"],
                                                  "bot_token": env["SLACK_BOT_TOKEN"]})
    teams = create_secret(env["TEAMS_SECRET_ID"], {"app_id": env["TEAMS_APP_ID"], "tenant_id": env["TEAMS_TENANT_ID"],
                                                  "client_secret": env["TEAMS_CLIENT_SECRET"]})
    return f"{slack}, {teams}"


def local_role() -> str:
    iam = client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                        "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]})
    try:
        return iam.create_role(RoleName="regate-local", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName="regate-local")["Role"]["Arn"]


def placeholder_zip() -> bytes:
    """moto needs code to create a function; the real code runs in `cargo lambda watch`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\n# served by cargo lambda watch\n")
    return buffer.getvalue()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{read_env_file()['AWS_REGION']}:{ACCOUNT}:function:{name}"


def create_function(lambda_client, role: str, logical_id: str, resource: dict) -> tuple:
    binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary") or logical_id
    try:
        lambda_client.create_function(FunctionName=binary, Runtime="provided.al2023", Role=role, Handler="bootstrap",
                                      Code={"ZipFile": placeholder_zip()}, Architectures=["x86_64"])
        state = "created"
    except lambda_client.exceptions.ResourceConflictException:
        state = "exists"
    return binary, f"function {binary} ({state}; runs in cargo lambda watch)"


def resolve(value, functions: dict) -> str:
    """The local value of a DefinitionSubstitutions entry (!GetAtt Function.Arn, !Ref, a string)."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        logical = target.split(".")[0] if isinstance(target, str) else target[0]
        return function_arn(functions[logical])
    if "Ref" in value:
        return functions.get(value["Ref"], value["Ref"])
    raise ValueError(f"cannot resolve {value} locally")


def create_state_machine(sfn, role: str, logical_id: str, properties: dict, functions: dict) -> tuple:
    definition = (TEMPLATE.parent / properties["DefinitionUri"]).read_text()
    for key, value in properties.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace("${" + key + "}", resolve(value, functions))
    name = properties.get("Name", logical_id)
    if isinstance(name, dict):
        name = name.get("Fn::Sub", logical_id).replace("${AWS::StackName}", STACK_NAME)
    arn = f"arn:aws:states:{read_env_file()['AWS_REGION']}:{ACCOUNT}:stateMachine:{name}"
    try:
        sfn.create_state_machine(name=name, definition=definition, roleArn=role, type=properties.get("Type", "STANDARD"))
        state = "created"
    except sfn.exceptions.StateMachineAlreadyExists:
        sfn.update_state_machine(stateMachineArn=arn, definition=definition)
        state = "updated"
    return arn, f"state machine {name} ({state})"


def create_resources() -> None:
    template = load_template()
    resources = template.get("Resources", {})
    dynamodb = client("dynamodb")
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            print("resources:", create_table(dynamodb, logical_id, resource.get("Properties", {})))
        elif resource.get("Type") == "AWS::KMS::Key":
            print("resources:", create_key(logical_id, resource["Properties"]))
        elif resource.get("Type") == "AWS::S3::Bucket":
            print("resources:", create_bucket(logical_id, resource["Properties"]))
    print("resources:", create_chat_secrets())
    role = local_role()
    lambda_client = client("lambda")
    functions = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            functions[logical_id], text = create_function(lambda_client, role, logical_id, resource)
            print("resources:", text)
    sfn = client("stepfunctions")
    machines = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::StateMachine":
            machines[logical_id], text = create_state_machine(sfn, role, logical_id, resource["Properties"], functions)
            print("resources:", text)
    summary = {
        "state_machine_arn": machines.get("ApprovalStateMachine"),
        "slack_interactivity_url": f"{FUNCTIONS_URL}/lambda-url/callback/slack/interactions",
        "teams_messaging_endpoint": f"{FUNCTIONS_URL}/lambda-url/callback/teams/messages",
        "functions": functions,
    }
    RUN.mkdir(parents=True, exist_ok=True)
    RESOURCES_FILE.write_text(json.dumps(summary, indent=2))
    print(f"resources: state machine {summary['state_machine_arn']}")
    print(f"resources: Slack interactivity URL {summary['slack_interactivity_url']}")
    print(f"resources: Teams messaging endpoint {summary['teams_messaging_endpoint']}")


# ---------------------------------------------------------------- commands

def up(_args) -> None:
    if not VENV_PYTHON.exists():
        sys.exit("up: the local stack's tools are missing; run infra/local/setup.sh first")
    build_functions()
    for service in services():
        if functions_are_stale(service):
            print("functions: the binaries changed; restarting cargo lambda watch")
            stop(service)
        start(service)
    try:
        create_resources()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        sys.exit(f"up: creating the resources from {TEMPLATE} failed: {error}")
    publish_policy()
    warm_functions()
    print("stack is up; settings for clients are in infra/local/local.env; stop it with: infra/local/stack down")


def down(_args) -> None:
    for service in reversed(services()):
        stop(service)
    CLOCK_OFFSET_FILE.unlink(missing_ok=True)


def status(_args) -> None:
    all_up = True
    for service in services():
        pid = running_pid(service)
        ok = pid is not None and healthy(service.health_url)
        all_up &= ok
        state = "up" if ok else ("started but not answering" if pid else "down")
        print(f"{service.name}: {state}" + (f" (pid {pid}, http://127.0.0.1:{service.port})" if pid else ""))
    sys.exit(0 if all_up else 1)


def resources(_args) -> None:
    create_resources()


def main() -> None:
    parser = argparse.ArgumentParser(prog="infra/local/stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, text in [
        ("up", up, "start the stack and create the resources from infra/template.yaml"),
        ("down", down, "stop what `up` started"),
        ("status", status, "say what is running; exit 1 unless everything is up"),
        ("resources", resources, "(re)create the resources from infra/template.yaml"),
    ]:
        commands.add_parser(name, help=text).set_defaults(handler=handler)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
