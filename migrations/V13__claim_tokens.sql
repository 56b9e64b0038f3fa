-- V13: a fence per claim, and batch commits that can be replayed.
--
-- lease_owner names the worker process that holds a job; until now it was
-- also the fence every worker write checked. A process can claim the same
-- job twice (its lease expired while it was cut off, and its own message
-- came back), and both runs then passed every fence. Now each claim draws a
-- token, and every write of a run (batch commits, the large-batch fence,
-- lease renewals, the handback, a retry's scheduling, the final commit) is
-- fenced by it: a later claim's token shuts the earlier run out, whoever
-- made it. The token is also the run id of a full sync's seen sets (V12).
-- It stays on the job when the job ends, so that a replayed final commit
-- can be recognised.
--
-- commit_seq: how many batch commits the current claim has applied. Each
-- commit carries its number and applies only after the one before it;
-- when the connection is lost after COMMIT was sent, the worker cannot
-- tell whether its commit landed and sends it again: finding its number
-- already applied, the statement writes nothing and says so (no count is
-- added twice).
--
-- Neither column is indexed: the claim's update stays a HOT update.
ALTER TABLE sync_jobs
    ADD COLUMN lease_token uuid,
    ADD COLUMN commit_seq bigint NOT NULL DEFAULT 0;
