-- The decision log as a DynamoDB export writes it (DYNAMODB_JSON: one {"Item": ...} per line,
-- every attribute typed: {"S": ...}, {"N": ...}, {"L": [...]}, {"M": {...}}). Replace the
-- LOCATION with your export's data folder: s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID/data/.
-- Key markers (sk = KEY#...), policy bundles (pk = POLICY#...) and the checkpoints' record
-- (pk = CHECKPOINT) are rows too: the queries read events only (by their kind).
CREATE EXTERNAL TABLE IF NOT EXISTS regate_decision_log (
  Item struct<
    pk: struct<S: string>,
    sk: struct<S: string>,
    request_id: struct<S: string>,
    seq: struct<N: string>,
    kind: struct<S: string>,
    `at`: struct<S: string>,
    actor: struct<S: string>,
    platform: struct<S: string>,
    outcome: struct<S: string>,
    reasons: struct<L: array<struct<S: string>>>,
    policy_revision: struct<S: string>,
    input_digest: struct<S: string>,
    `data`: struct<M: struct<
      vote: struct<S: string>,
      reason: struct<S: string>,
      state: struct<S: string>
    >>,
    prev_hash: struct<S: string>,
    hash: struct<S: string>
  >
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID/data/'
TBLPROPERTIES ('has_encrypted_data' = 'true');
