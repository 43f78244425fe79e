-- Requests that expired: nobody decided them within their timeout.
SELECT
  Item.request_id.S AS request_id,
  Item."at".S AS expired_at,
  Item.reasons.L[1].S AS reason
FROM regate_decision_log
WHERE Item.kind.S = 'expired'
ORDER BY expired_at, request_id;
