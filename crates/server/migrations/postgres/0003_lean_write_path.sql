-- Fewer index writes per message. Keep in step with ../sqlite/0003_lean_write_path.sql
-- (which also stores the change log and counters in their primary keys, as PostgreSQL's
-- heap tables need no such change).

-- Nothing reads messages by creation time alone: every query starts from a user.
DROP INDEX messages_by_created;
