"""moto server for the regate local stack.

Runs moto's ThreadedMotoServer on 127.0.0.1 with Step Functions executing state machines, and
bridges moto's Lambda invoke to `cargo lambda watch`: moto's no-docker Lambda backend cannot
run code, so its invoke POSTs the payload to the real function binary through cargo lambda's
Invoke API. An error answer sets x-amz-function-error, so a typed Rust error reaches the
state machine's Catch with its type name.
"""

import argparse
import copy
import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.core.exceptions import AWSError
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackConsumerTimeout,
    CallbackNotifyConsumerError,
    CallbackPoolManager,
)
from moto.server import ThreadedMotoServer
from moto.stepfunctions.models import StateMachine

LAMBDA_TIMEOUT_SECONDS = 120


def make_invoke(functions_url: str):
    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name = function_name.split(":function:")[-1].split(":")[0]
        url = f"{functions_url}/2015-03-31/functions/{name}/invocations"
        data = body if isinstance(body, bytes) else (body or "{}").encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=LAMBDA_TIMEOUT_SECONDS) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return error.read()
        except (urllib.error.URLError, TimeoutError) as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Lambda.ServiceException", "errorMessage": f"cannot reach {url}: {error}"}).encode()

    return invoke


def _snapshot_without_executions(self, memo):
    """StartExecution deep-copies the state machine as the new execution's snapshot, and moto
    5.2.1's copy takes along the machine's earlier executions and its backend. Once one
    execution holds a thread lock (every execution that waited on a task token does), every
    later StartExecution on that machine fails with "cannot pickle '_thread.RLock' object".
    The snapshot needs the definition, not the history: it shares the backend and starts with
    no executions."""
    clone = self.__class__.__new__(self.__class__)
    memo[id(self)] = clone
    for name, value in self.__dict__.items():
        if name == "backend":
            setattr(clone, name, value)
        elif name == "executions":
            setattr(clone, name, [])
        else:
            setattr(clone, name, copy.deepcopy(value, memo))
    return clone


def _one_dynamodb_call_at_a_time(call_action):
    """DynamoDB applies each request atomically: a conditional write checks its condition and
    writes as one step, so of many racing writers exactly one wins. moto's threaded server runs
    requests side by side with no such guarantee, and two racing conditional updates can both
    succeed. Serialising DynamoDB calls gives the local stack DynamoDB's own semantics."""
    lock = threading.Lock()

    def call(self):
        with lock:
            return call_action(self)

    return call


def _item_restorer(backend, entry: dict):
    """Saves one item that a TransactWriteItems entry names, as it is now, and returns a function
    that puts it back (or removes it, if it did not exist)."""
    op = next(iter(entry.values()), {})
    table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
    attrs = (op.get("Item") or op.get("Key")) if table is not None else None
    if not attrs or table.hash_key_attr not in attrs:
        return lambda: None
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = None
    if table.has_range_key:
        if table.range_key_attr not in attrs:
            return lambda: None
        range_key = DynamoType(attrs[table.range_key_attr])
    before = copy.deepcopy(table.get_item(hash_key, range_key))

    def restore() -> None:
        if range_key is None:
            table.items.pop(hash_key, None)
            if before is not None:
                table.items[hash_key] = before
        else:
            table.items[hash_key].pop(range_key, None)
            if before is not None:
                table.items[hash_key][range_key] = before

    return restore


def _transactions_save_only_their_items(transact_write_items):
    """moto 5.2.1's TransactWriteItems deep-copies every table it touches so that it can roll
    back a cancelled transaction. The copy grows with the table: once the decision log holds a
    few thousand events, each append takes tens of milliseconds under the one-call-at-a-time
    lock, and a burst of clicks waits seconds on copies. A transaction only changes the items it
    names, so this saves those, lets moto's whole-table copy be the table itself, and puts the
    saved items back when moto cancels or refuses the transaction."""
    no_copy = object()

    def transact(self, transact_items):
        restorers = [_item_restorer(self, entry) for entry in transact_items]
        earlier = Table.__dict__.get("__deepcopy__", no_copy)
        Table.__deepcopy__ = lambda table, memo: table
        try:
            return transact_write_items(self, transact_items)
        except Exception:
            for restore in reversed(restorers):
                restore()
            raise
        finally:
            if earlier is no_copy:
                del Table.__deepcopy__
            else:
                Table.__deepcopy__ = earlier

    return transact


def _queries_read_one_partition(query):
    """moto 5.2.1 answers a Query on a table's own key by sorting every item of the table and
    keeping the partition's; as the decision log grows over a few test runs, each append's read
    of its head gets slower, and under the one-call-at-a-time lock so does every other call.
    DynamoDB reads one partition; so does this, by letting the query see only that partition's
    items. Index queries are left as they are."""

    def partition_query(self, hash_key, *args, **kwargs):
        # Table.query(hash_key, range_comparison, range_objs, limit, exclusive_start_key,
        #             scan_index_forward, projection_expressions, index_name, ...)
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)
        if partition is None:
            items = []
        elif self.range_key_attr:
            items = sorted(partition.values(), key=lambda item: item.range_key)
        else:
            items = [partition]
        self.all_items = lambda: items
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    return partition_query


def _timed_out_tokens_answer_task_timed_out(wait):
    """Step Functions answers SendTaskSuccess/Failure on a token whose task timed out with
    TaskTimedOut. moto's interpreter leaves the timed-out token in its pool, so such a call
    succeeds silently and the caller believes the workflow took its outcome. Reporting the
    timeout on the token, as the interpreter does for other consumer errors, restores the real
    answer."""

    def wait_and_report(self, timeout_seconds, callback_endpoint):
        outcome = wait(self, timeout_seconds, callback_endpoint)
        if outcome is None:
            callback_endpoint.report(CallbackConsumerTimeout())
        return outcome

    return wait_and_report


def _closed_tokens_answer_like_step_functions(notify):
    """SendTaskSuccess/Failure on a token whose task timed out answers TaskTimedOut in Step
    Functions (TaskDoesNotExist when the task ended otherwise). moto maps that case to
    exceptions it cannot construct (a TypeError, answered as HTTP 500), so a caller saw an
    outage, retried for seconds and reported the service unavailable. This gives the answers
    Step Functions documents, as 400 errors with those codes."""

    def notify_or_answer(self, callback_id, outcome):
        try:
            return notify(self, callback_id, outcome)
        except CallbackNotifyConsumerError as error:
            if isinstance(error.callback_consumer_error, CallbackConsumerTimeout):
                raise AWSError("Task Timed Out", exception_type="TaskTimedOut", status=400)
            raise AWSError("Task Does Not Exist", exception_type="TaskDoesNotExist", status=400)

    return notify_or_answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--functions-url", default="http://127.0.0.1:9000")
    args = parser.parse_args()

    # The Step Functions interpreter calls other services (SQS, Lambda, ...) through boto3 at
    # localhost:$MOTO_PORT, so it must name this server's port.
    os.environ["MOTO_PORT"] = str(args.port)
    LambdaSimpleBackend.invoke = make_invoke(args.functions_url)
    StateMachine.__deepcopy__ = _snapshot_without_executions
    DynamoHandler.call_action = _one_dynamodb_call_at_a_time(DynamoHandler.call_action)
    Table.query = _queries_read_one_partition(Table.query)
    DynamoDBBackend.transact_write_items = _transactions_save_only_their_items(
        DynamoDBBackend.transact_write_items
    )
    StateTaskServiceCallback._wait_for_task_token_timeout = _timed_out_tokens_answer_task_timed_out(
        StateTaskServiceCallback._wait_for_task_token_timeout
    )
    CallbackPoolManager.notify = _closed_tokens_answer_like_step_functions(CallbackPoolManager.notify)
    # werkzeug logs a line for every request; at a few hundred calls a second that costs a fifth
    # of moto's time on this machine. Errors are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    config = json.dumps({"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}).encode()
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{args.port}/moto-api/config", data=config, method="POST"), timeout=10
    ).read()
    print(f"moto listening on http://127.0.0.1:{args.port} (Lambda invoke -> {args.functions_url})", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
