-- Votes refused and why: who clicked, which way, and the reason they were told.
SELECT
  Item.request_id.S AS request_id,
  Item.actor.S AS voter,
  Item."data".M.vote.S AS vote,
  Item."at".S AS refused_at,
  Item.reasons.L[1].S AS reason
FROM regate_decision_log
WHERE Item.kind.S = 'vote_refused'
ORDER BY refused_at, request_id;
