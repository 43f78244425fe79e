-- Decisions by outcome per day: requests decided at once by the policy (allow or deny at the
-- first evaluation) and requests decided by votes.
SELECT
  substr(Item."at".S, 1, 10) AS day,
  Item.outcome.S AS outcome,
  count(*) AS decisions
FROM regate_decision_log
WHERE Item.kind.S = 'decided'
   OR (Item.kind.S = 'evaluated' AND Item.outcome.S IN ('allow', 'deny'))
GROUP BY substr(Item."at".S, 1, 10), Item.outcome.S
ORDER BY day, outcome;
