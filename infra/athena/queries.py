"""The Athena queries of infra/athena/, run locally with DuckDB (Athena cannot run here).

  queries.py run EXPORT_DIR       runs every query in queries/ over the DynamoDB export under
                                  EXPORT_DIR and prints {query name: [rows]} as JSON
  queries.py check-template FILE  checks that FILE (the SAM template) has every query, with
                                  the same text, as an AWS::Athena::NamedQuery named regate-NAME

The table DuckDB reads is the one create_table.sql declares for Athena: its column type is
translated from Hive's (struct<a: T>, array<T>, string) to DuckDB's, so the two cannot drift.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries"


def queries() -> dict:
    return {path.stem: path.read_text() for path in sorted(QUERIES.glob("*.sql"))}


def hive_to_duckdb(hive: str) -> str:
    """`struct<a: string, b: array<struct<S: string>>>` -> `STRUCT("a" VARCHAR, "b" STRUCT("S" VARCHAR)[])`."""
    tokens = re.findall(r"`[^`]+`|[A-Za-z_][A-Za-z0-9_]*|[<>:,]", hive)
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def parse_type() -> str:
        name = take().lower()
        if name == "string":
            return "VARCHAR"
        if name == "array":
            take()  # <
            inner = parse_type()
            take()  # >
            return f"{inner}[]"
        if name == "struct":
            take()  # <
            fields = []
            while True:
                field = take().strip("`")
                take()  # :
                fields.append(f'"{field}" {parse_type()}')
                if take() == ">":
                    break
            return f"STRUCT({', '.join(fields)})"
        raise ValueError(f"unknown Hive type {name!r}")

    return parse_type()


def item_type() -> str:
    ddl = (HERE / "create_table.sql").read_text()
    ddl = "\n".join(line.split("--")[0] for line in ddl.splitlines())
    start = ddl.index("Item struct<") + len("Item ")
    depth, end = 0, start
    for end in range(start, len(ddl)):
        depth += ddl[end] == "<"
        depth -= ddl[end] == ">"
        if ddl[end] == ">" and depth == 0:
            break
    return hive_to_duckdb(ddl[start:end + 1])


def run(export_dir: str) -> None:
    import duckdb

    files = sorted(str(p) for p in Path(export_dir).glob("**/AWSDynamoDB/*/data/*.gz"))
    if not files:
        sys.exit(f"no data files under {export_dir}/AWSDynamoDB/*/data/")
    con = duckdb.connect()
    quote = lambda text: "'" + text.replace("'", "''") + "'"
    con.execute(
        "CREATE VIEW regate_decision_log AS SELECT * FROM read_json("
        f"[{', '.join(quote(f) for f in files)}], format = 'newline_delimited', "
        f"compression = 'gzip', columns = {{'Item': {quote(item_type())}}})"
    )
    results = {}
    for name, sql in queries().items():
        cursor = con.execute(sql)
        columns = [c[0] for c in cursor.description]
        results[name] = [dict(zip(columns, row)) for row in cursor.fetchall()]
    print(json.dumps(results, indent=2, default=str))


def check_template(template: str) -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short tags (!Ref, !Sub, ...) do not matter here.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    resources = yaml.load(Path(template).read_text(), Loader=Loader)["Resources"]
    named = {
        r["Properties"]["Name"]: r["Properties"]["QueryString"]
        for r in resources.values()
        if r.get("Type") == "AWS::Athena::NamedQuery"
    }
    problems = []
    for name, sql in queries().items():
        stated = named.pop(f"regate-{name}", None)
        if stated is None:
            problems.append(f"the template has no named query regate-{name} (queries/{name}.sql)")
        elif stated.strip() != sql.strip():
            problems.append(f"the template's regate-{name} differs from queries/{name}.sql")
    problems += [f"the template's {name} has no file in queries/" for name in named]
    if problems:
        sys.exit("\n".join(problems))
    print(f"athena: the template names all {len(queries())} queries with their files' text")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "check-template":
        check_template(sys.argv[2])
    else:
        sys.exit(__doc__)
