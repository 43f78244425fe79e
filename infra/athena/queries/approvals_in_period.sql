-- Who approved what in a period: every counted approval, oldest first.
SELECT
  Item.request_id.S AS request_id,
  Item.actor.S AS approver,
  Item.platform.S AS platform,
  Item."at".S AS approved_at,
  Item."data".M.reason.S AS reason
FROM regate_decision_log
WHERE Item.kind.S = 'vote'
  AND Item."data".M.vote.S = 'approve'
  AND Item."at".S BETWEEN '2026-06-01T00:00:00.000Z' AND '2026-06-30T23:59:59.999Z'
ORDER BY approved_at, request_id;
