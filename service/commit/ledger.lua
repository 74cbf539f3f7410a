-- The batch commit ledger: see service/commit/ledger.py for the protocol and its invariants.
--
-- KEYS[1] ledger hash, KEYS[2] epoch counter, KEYS[3..] the batch's state hashes; all carry
-- the shard's hash tag ARGV[1]. ARGV[2..5]: epoch, batch id, from offset, next offset (decimal).
-- ARGV[6..]: ops, each "op code, key index, count" then its operands:
--   D i 0          DEL KEYS[i]
--   S i n f v ...  HSET KEYS[i] with n field/value pairs
--   H i n f ...    HDEL KEYS[i] with n fields
--   T i 1 ms       PEXPIRE KEYS[i] ms
-- Every check runs before the first write: Redis does not roll a script back on a runtime error.

local ledger, epoch_key = KEYS[1], KEYS[2]
local tag = ARGV[1]
local epoch = tonumber(ARGV[2])
local batch_id = tonumber(ARGV[3])
local from_offset = tonumber(ARGV[4])
local next_offset = tonumber(ARGV[5])

local function refuse(msg)
  return redis.error_reply('ERR dstreams ledger refused, nothing written: ' .. msg)
end

-- 1a. every key belongs to this shard (Redis Cluster's rule: the text inside the first {...})
for i = 1, #KEYS do
  local k = KEYS[i]
  local open = string.find(k, '{', 1, true)
  local close = open and string.find(k, '}', open + 1, true)
  if not close or string.sub(k, open + 1, close - 1) ~= tag then
    return refuse('key ' .. k .. ' lacks the hash tag {' .. tag .. '}')
  end
end
if not (epoch and batch_id and from_offset and next_offset) or next_offset < from_offset then
  return refuse('malformed header')
end

-- 1b. decode the ops (structure only) so that a malformed call writes nothing
local ops = {}
local pos = 6
while pos <= #ARGV do
  local code, idx, n = ARGV[pos], tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  if not idx or not n or idx < 3 or idx > #KEYS then
    return refuse('malformed op at ARGV[' .. pos .. ']')
  end
  local width
  if code == 'D' then width = 0
  elseif code == 'S' then width = 2 * n
  elseif code == 'H' or code == 'T' then width = n
  else return refuse('unknown op ' .. tostring(code)) end
  if (code == 'S' or code == 'H') and (n < 1 or width > 2000) then
    return refuse('op at ARGV[' .. pos .. '] has ' .. n .. ' items (1 to 2000 arguments per op)')
  end
  local ms = code == 'T' and tonumber(ARGV[pos + 3])
  if code == 'T' and (n ~= 1 or not ms or ms < 1 or ms ~= math.floor(ms)) then
    return refuse('malformed PEXPIRE op')
  end
  if pos + 2 + width > #ARGV then
    return refuse('truncated op at ARGV[' .. pos .. ']')
  end
  ops[#ops + 1] = {code, KEYS[idx], pos + 3, pos + 2 + width}
  pos = pos + 3 + width
end

-- 1c. fencing and idempotence, against the recorded position
local function key_type(k)
  return redis.call('TYPE', k)['ok']
end
if key_type(epoch_key) ~= 'string' and key_type(epoch_key) ~= 'none' then
  return refuse('epoch key ' .. epoch_key .. ' is not a string')
end
if key_type(ledger) ~= 'hash' and key_type(ledger) ~= 'none' then
  return refuse('ledger key ' .. ledger .. ' is not a hash')
end
local current_epoch = redis.call('GET', epoch_key) or '0'
local rec = redis.call('HMGET', ledger, 'next_offset', 'batch_id', 'epoch', 'committed_at_ms')
local function reply(outcome)
  return {outcome, rec[1], rec[2], rec[3], rec[4], current_epoch}
end

if epoch > tonumber(current_epoch) then
  -- our epoch came from this counter, so Redis lost writes since (a failover without WAIT, an
  -- AOF without fsync, an emptied server): nothing recorded here can be trusted as ours
  return reply('REGRESSED')
end
if epoch < tonumber(current_epoch) then
  return reply('FENCED')
end
-- the batch id recorded: never lower than the one before it (new records under an older id
-- come from an owner whose clock is behind the previous owner's; they are new all the same)
local recorded_batch = ARGV[3]
if rec[1] then
  local r_next, r_batch = tonumber(rec[1]), tonumber(rec[2])
  if next_offset <= r_next and (next_offset > from_offset or batch_id <= r_batch) then
    return reply('DUPLICATE')
  end
  if from_offset ~= r_next then
    return reply('GAP')
  end
  if batch_id <= r_batch then
    recorded_batch = rec[2]
  end
end

-- 1d. the realistic runtime failure: a hash command on a key of another type (WRONGTYPE).
-- A key dropped earlier in this batch is a fresh key by the time it is written.
local dropped = {}
for _, op in ipairs(ops) do
  local code, k = op[1], op[2]
  if code == 'D' then
    dropped[k] = true
  elseif (code == 'S' or code == 'H') and not dropped[k] then
    local t = key_type(k)
    if t ~= 'hash' and t ~= 'none' then
      return refuse('WRONGTYPE key ' .. k .. ' holds a ' .. t .. ', not a hash')
    end
  end
end

-- 2. writes: the batch's state, then the position it reached
for _, op in ipairs(ops) do
  local code, k, first, last = op[1], op[2], op[3], op[4]
  if code == 'D' then
    redis.call('DEL', k)
  elseif code == 'S' then
    redis.call('HSET', k, unpack(ARGV, first, last))
  elseif code == 'H' then
    redis.call('HDEL', k, unpack(ARGV, first, last))
  end
end
for _, op in ipairs(ops) do
  if op[1] == 'T' then
    redis.call('PEXPIRE', op[2], ARGV[op[3]])
  end
end
local now = redis.call('TIME')
local now_ms = string.format('%.0f', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
redis.call('HSET', ledger, 'next_offset', ARGV[5], 'batch_id', recorded_batch, 'epoch', ARGV[2],
  'from_offset', ARGV[4], 'committed_at_ms', now_ms)
redis.call('HINCRBY', ledger, 'applied_batches', 1)
rec = {ARGV[5], recorded_batch, ARGV[2], now_ms}

-- 3.
return reply('APPLIED')
