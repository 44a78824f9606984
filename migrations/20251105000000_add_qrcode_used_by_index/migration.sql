-- Built without blocking writes: CREATE INDEX CONCURRENTLY cannot run in a transaction,
-- so this migration is alone in its folder and runs statement by statement.
CREATE INDEX CONCURRENTLY IF NOT EXISTS "QRCode_usedByUserId_idx" ON "QRCode"("usedByUserId");
