-- The demo's closing query: one line per exported run.
SELECT r.run_id,
       r.name,
       r.state,
       count(*)                        AS steps,
       min(h._step)                    AS first_step,
       max(h._step)                    AS last_step,
       round(min(h.loss), 4)           AS min_loss,
       count(h.val_loss)               AS val_loss_rows,
       count(*) FILTER (WHERE isnan(h.grad_norm)) AS nan_grad_norm
FROM history AS h
JOIN runs AS r USING (entity, project, run_id)
GROUP BY ALL
ORDER BY r.run_id;
